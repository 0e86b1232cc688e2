"""Shared state of the limits across workers, in the project's database
(PostgreSQL in production, SQLite in development).

Each limit keeps its models in a block of its own below.
"""

from django.db import models

# -- Unique tasks (queueworks/limits/unique.py) ---------------------------------------


class UniqueClaim(models.Model):
    """One live unique key: the task that holds it, waiting or running.

    Written in the same transaction as the task's outbox record; removed when
    the task ends (success, final failure, dead-lettered, cancelled).  A claim
    past ``expires_at`` is free: the next enqueue with the key takes it over,
    and a message of the old holder that arrives later runs nothing.
    """

    WAITING = "waiting"
    RUNNING = "running"

    # sha256 of the task name and the key's values: fixed length, indexable.
    key = models.CharField(max_length=64, unique=True)
    task_name = models.CharField(max_length=255, db_index=True)
    # The key's values as the operator reads them ("tenant_id=42").
    label = models.CharField(max_length=500)
    task_id = models.CharField(max_length=255, db_index=True)
    state = models.CharField(max_length=8, default=WAITING)
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.task_name}({self.label}) -> {self.task_id}"


class UniqueTally(models.Model):
    """Per task: enqueues answered with the holder's id instead of a new run."""

    task_name = models.CharField(max_length=255, unique=True)
    duplicates = models.PositiveBigIntegerField(default=0)
    taken_over = models.PositiveBigIntegerField(default=0)
    superseded = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"{self.task_name}: {self.duplicates} duplicates"

# -- end of unique tasks --------------------------------------------------------------
