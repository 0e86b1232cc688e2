"""Task outcome and runtime tallies, written by every worker process.

Two tables of the same shape: ``TaskTotal`` counts since installation (the
Prometheus counters and histogram, never decreasing); ``TaskMinute`` the same
per minute for the last days (the /ops/ throughput and percentiles), pruned
by Celery's daily ``celery.backend_cleanup``.  A row is one key of one task
(see ``queueworks/metrics/names.py``); workers add to it with ``value = value + n``
so several processes on several hosts never overwrite each other.
"""

from django.db import models


class TaskTotal(models.Model):
    task_name = models.CharField(max_length=255)
    key = models.CharField(max_length=32)
    value = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task_name", "key"],
                                               name="metrics_total_task_key")]
        permissions = [("view_metrics", "Can scrape /metrics")]

    def __str__(self):
        return f"{self.task_name} {self.key}={self.value:g}"


class TaskMinute(models.Model):
    task_name = models.CharField(max_length=255)
    minute = models.DateTimeField()
    key = models.CharField(max_length=32)
    value = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task_name", "minute", "key"],
                                               name="metrics_minute_task_key")]
        indexes = [models.Index(fields=["minute", "task_name"], name="metrics_minute_idx")]

    def __str__(self):
        return f"{self.task_name} {self.minute:%Y-%m-%d %H:%M} {self.key}={self.value:g}"
