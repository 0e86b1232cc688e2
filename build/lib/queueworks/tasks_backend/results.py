"""A Django ``TaskResult`` read from what the workers already write: the
results table (django-celery-results) and the outbox's ``TaskRecord``."""

from __future__ import annotations

import json

from celery import states

from queueworks.tasks_backend.api import TaskError, TaskResult, TaskResultStatus

STATUS = {
    states.PENDING: TaskResultStatus.READY,
    states.RECEIVED: TaskResultStatus.READY,
    states.RETRY: TaskResultStatus.READY,
    states.STARTED: TaskResultStatus.RUNNING,
    "PROGRESS": TaskResultStatus.RUNNING,
    states.SUCCESS: TaskResultStatus.SUCCESSFUL,
    states.FAILURE: TaskResultStatus.FAILED,
    states.REVOKED: TaskResultStatus.FAILED,
    states.REJECTED: TaskResultStatus.FAILED,
}


def task_result_from_rows(*, task, backend_alias: str, record, row, deliveries: int = 0
                          ) -> TaskResult:
    """``record``: the outbox's TaskRecord (or None); ``row``: the results
    table's TaskResult (or None: not run yet); ``deliveries``: the times a
    worker received it again after a lost worker (queueworks/reliability)."""
    status = STATUS.get(row.status, TaskResultStatus.READY) if row else TaskResultStatus.READY
    attempts = max(deliveries, 1) if row is not None and row.worker else 0
    errors = []
    if row is not None and status == TaskResultStatus.FAILED:
        failure = _json(row.result) or {}
        exc_class = ".".join(part for part in (failure.get("exc_module"), failure.get("exc_type"))
                             if part) or row.status
        errors.append(TaskError(exception_class_path=exc_class, traceback=row.traceback or ""))
    started_at = getattr(row, "date_started", None) if row else None
    finished = status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
    result = TaskResult(
        task=task,
        id=(record.task_id if record else row.task_id),
        status=status,
        enqueued_at=record.accepted_at if record else (row.date_created if row else None),
        started_at=started_at,
        finished_at=row.date_done if row is not None and finished else None,
        last_attempted_at=started_at,
        args=list(record.args) if record else [],
        kwargs=dict(record.kwargs) if record else {},
        backend=backend_alias,
        errors=errors,
        worker_ids=[row.worker] * attempts if row is not None and row.worker else [],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", _json(row.result))
    return result


def _json(text):
    if text in (None, ""):
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None
