"""Shared state of the limits, in the project's database (PostgreSQL in
production, SQLite in development): every worker process on every host reads
and writes the same rows, so a limit holds across all of them.

A *limit name* is ``"<task name>:rate"`` or ``"<task name>:concurrency"``; a
*key* is the value of the declaration's key argument in one call (``""``: the
task as a whole).  Each kind of limit keeps its models in a block of its own.
"""

from django.db import models

# -- Rate and concurrency limits ------------------------------------------------


class LimitKey(models.Model):
    """One (limit, key): the row every decision about it locks first.

    For a rate limit it is also the bucket (GCRA): ``tat`` is the theoretical
    arrival time of the next start (seconds since the epoch), ``horizon`` the
    retry time last promised to a refused call, so refused calls come back
    one interval apart instead of all at once, and ``last_start`` the time
    of the latest start."""

    limit = models.CharField(max_length=255)
    key = models.CharField(max_length=255, default="", blank=True)
    tat = models.FloatField(default=0.0)
    horizon = models.FloatField(default=0.0)
    last_start = models.FloatField(default=0.0, db_default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["limit", "key"],
                                               name="limits_key_limit_key")]

    def __str__(self):
        return f"{self.limit}[{self.key}]"


class ConcurrencySlot(models.Model):
    """A running call holding one slot of a concurrency limit: a lease.

    Deleted when the run ends, whatever its outcome; a holder killed with
    SIGKILL leaves it until ``expires_at``, after which it no longer counts
    (and the redelivered message of the same task id takes it over)."""

    limit = models.CharField(max_length=255)
    key = models.CharField(max_length=255, default="", blank=True)
    task_id = models.CharField(max_length=255)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    # "" when the call took the slot itself; else the token of the hand-over
    # that gave it to a waiting call (queueworks/limits/handoff.py): only the
    # message published with that token (or its redelivery) may run on it.
    grant = models.CharField(max_length=32, default="", blank=True, db_default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["limit", "key", "task_id"],
                                               name="limits_slot_task")]
        indexes = [models.Index(fields=["limit", "key", "expires_at"],
                                name="limits_slot_live_idx")]

    def __str__(self):
        return f"{self.limit}[{self.key}] held by {self.task_id}"


class LimitWaiter(models.Model):
    """A call that was refused by a limit and waits to start.  Deleted when it
    starts.

    * Rate limit (``DEFERRED``): its message was published again with a delay
      until ``retry_at``.
    * Concurrency limit (``PARKED``): no message of it is in the broker; this
      row holds the call (``message``: what to publish) until a slot is
      handed to it, oldest first (``id`` order).  Then ``WOKEN``: a slot is
      held for it and its message was published (queueworks/limits/handoff.py).
    """

    DEFERRED, PARKED, WOKEN = "deferred", "parked", "woken"

    limit = models.CharField(max_length=255)
    key = models.CharField(max_length=255, default="", blank=True)
    task_id = models.CharField(max_length=255)
    since = models.DateTimeField()
    retry_at = models.DateTimeField()
    state = models.CharField(max_length=8, default=DEFERRED, db_default=DEFERRED)
    message = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["limit", "key", "task_id"],
                                               name="limits_waiter_task")]
        indexes = [models.Index(fields=["limit", "key", "state", "id"],
                                name="limits_waiter_queue_idx")]

    def __str__(self):
        return f"{self.limit}[{self.key}] waiting: {self.task_id}"


class LimitTally(models.Model):
    """Counters since installation per (limit, key): starts let through,
    refusals, and seconds waited by the calls that then started."""

    limit = models.CharField(max_length=255)
    key = models.CharField(max_length=255, default="", blank=True)
    started = models.BigIntegerField(default=0)
    refused = models.BigIntegerField(default=0)
    waited_seconds = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["limit", "key"],
                                               name="limits_tally_limit_key")]

    def __str__(self):
        return f"{self.limit}[{self.key}]"

# -- end of rate and concurrency limits ------------------------------------------


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
