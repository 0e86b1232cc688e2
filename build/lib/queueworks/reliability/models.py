"""What makes redelivery safe and bounded.

* ``Effect``: one row per side effect that must happen once.  Its key is
  unique and it is inserted in the same transaction as the effect, so a task
  that is delivered twice applies its effect once (see ``effect_apply``).
* ``TaskDelivery``: how many times a message (task id) started executing after
  a redelivery, the delivery counter behind the delivery limit.
* ``DelayedTask``: a task with a countdown/ETA too far ahead to wait in a
  worker's memory (RabbitMQ's ``consumer_timeout``); published when it is near.
"""

from django.db import models


class Effect(models.Model):
    key = models.CharField(max_length=255, unique=True)
    task_id = models.CharField(max_length=255, blank=True)
    applied_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.key


class TaskDelivery(models.Model):
    task_id = models.CharField(max_length=255, unique=True)
    task_name = models.CharField(max_length=255)
    # Execution starts counted so far (the first delivery is counted as 1 only
    # once a redelivery shows up, so the common path writes nothing).
    deliveries = models.PositiveIntegerField(default=0)
    dead_lettered_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.task_name}[{self.task_id}] x{self.deliveries}"


class DelayedTask(models.Model):
    task_id = models.CharField(max_length=255, unique=True)
    task_name = models.CharField(max_length=255)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    options = models.JSONField(default=dict)
    eta = models.DateTimeField(db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.task_name}[{self.task_id}] at {self.eta}"
