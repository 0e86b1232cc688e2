"""What the Task API accepted, and what operators did to it.

An accepted task is its ``TaskRecord`` row, written in the caller's
transaction: the row is the outbox from which the message is published
(queueworks/taskapi/outbox.py).

The execution state itself lives in django-celery-results' ``TaskResult``
(one row per task id, written PENDING by the API before publishing, then
STARTED/PROGRESS/SUCCESS/FAILURE/REVOKED by the worker).  ``TaskRecord`` holds
what ``TaskResult`` cannot: the exact JSON arguments (for re-runs), the queue
and priority the task was published with, who started it, and the
cancellation that workers check before running the task (the database, not
the workers' in-memory revoke list, is the source of truth).
"""

from django.conf import settings
from django.db import models

# The header on every task the Task API publishes (any other first delivery
# cannot have been cancelled, since the API only cancels ids it knows).
from queueworks.dispatch.headers import RECORDED_HEADER  # noqa: E402,F401


class TaskRecord(models.Model):
    task_id = models.CharField(max_length=255, unique=True)
    task_name = models.CharField(max_length=255, db_index=True)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=200, db_index=True)
    priority = models.PositiveSmallIntegerField(null=True, blank=True)
    eta = models.DateTimeField(null=True, blank=True)
    retries = models.PositiveIntegerField(default=0)
    accepted_at = models.DateTimeField(auto_now_add=True, db_index=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns",
    )
    # Cancellation: set once, checked by workers before the task runs.
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    cancel_terminate = models.BooleanField(default=False)
    cancel_signal = models.CharField(max_length=16, blank=True)
    # The outbox (queueworks/taskapi/outbox.py): when the broker confirmed
    # the task's message.  A record left unconfirmed past a bound is published
    # again by the sweeper; one the broker refused outright says why here.
    confirmed_at = models.DateTimeField(null=True, blank=True)
    publish_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-accepted_at"]
        indexes = [
            # The sweeper's query: the few unconfirmed records, oldest first.
            models.Index(fields=["accepted_at"], name="taskrecord_unconfirmed",
                         condition=models.Q(confirmed_at__isnull=True)),
        ]
        permissions = [
            ("operate_tasks", "Can start, cancel and re-run tasks through the Task API"),
            ("view_all_tasks", "Can read every task, not only those the user started"),
            ("cancel_system_tasks",
             "Can cancel tasks nobody started through the Task API (beat's, internal)"),
        ]

    def __str__(self):
        return f"{self.task_name} [{self.task_id}]"

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled_at is not None
