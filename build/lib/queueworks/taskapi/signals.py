"""Worker-side hooks: a cancelled task never runs, retries are counted, and the
Task API's records follow Celery's daily result cleanup.

Celery's revoke list lives in each worker's memory: a worker that is offline
or restarting when a task is revoked forgets it and would run the task when
the message is (re)delivered.  The cancellation is therefore stored in
``TaskRecord`` and checked here when a message arrives, in the worker's main
process, before the task is reserved or handed to the pool: a cancelled id is
added to the worker's revoke list, so Celery itself skips it, acknowledges the
message and stores REVOKED.

Only messages that can have been cancelled are looked up: those the Task API
published (``RECORDED_HEADER``), redeliveries and retries (a task that ran
once has a result row, so the API can cancel it).  A first delivery of a task
started anywhere else is unknown to the API and skips the query (one query per
received task would be the largest per-task cost of the worker's main process).
"""

import logging

from celery.signals import task_postrun, task_received, task_retry
from django.db import DatabaseError, close_old_connections, connection

from queueworks.taskapi.models import RECORDED_HEADER, TaskRecord

logger = logging.getLogger(__name__)


@task_received.connect(dispatch_uid="taskapi.refuse_cancelled_task")
def refuse_cancelled_task(sender=None, request=None, **kwargs):
    from queueworks.dispatch.compat.celery import worker_state

    task_id = getattr(request, "id", None)
    if not task_id or not _may_be_cancelled(request):
        return
    try:
        if not connection.in_atomic_block:
            # The worker's main process is long-lived: drop a connection the
            # database closed (or that is past CONN_MAX_AGE) before using it.
            close_old_connections()
        cancelled = TaskRecord.objects.filter(
            task_id=task_id, cancelled_at__isnull=False,
        ).exists()
    except DatabaseError:
        # The in-memory revoke list still applies; never block the consumer.
        logger.exception("Could not check whether task %s was cancelled", task_id)
        return
    if cancelled:
        worker_state.revoked.add(task_id)
        logger.warning("Task %s[%s] was cancelled; it will not run.",
                       getattr(request, "name", "?"), task_id)


def _may_be_cancelled(request) -> bool:
    message = getattr(request, "message", None)
    headers = getattr(message, "headers", None) or {}
    delivery_info = getattr(request, "delivery_info", None) or {}
    return bool(headers.get(RECORDED_HEADER) or headers.get("retries")
                or delivery_info.get("redelivered"))


@task_retry.connect(dispatch_uid="taskapi.count_retry")
def count_retry(sender=None, request=None, **kwargs):
    task_id = getattr(request, "id", None)
    if task_id:
        TaskRecord.objects.filter(task_id=task_id).update(
            retries=(getattr(request, "retries", 0) or 0) + 1,
        )


@task_postrun.connect(dispatch_uid="taskapi.cleanup_records")
def cleanup_records_after_backend_cleanup(sender=None, **kwargs):
    """After Celery's daily ``celery.backend_cleanup``, drop the Task API's
    records of the results it deleted."""
    if getattr(sender, "name", None) == "celery.backend_cleanup":
        from queueworks.taskapi.retention import task_results_cleanup

        task_results_cleanup()
