"""The Task API's bulk start (POST /api/v1/tasks/bulk/): many calls of one
allowlisted task, recorded in the caller's transaction (the outbox,
queueworks/taskapi/outbox.py) and published as one batch
(``queueworks.dispatch.services.tasks_enqueue_bulk``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence

from django.db import transaction

from queueworks.dispatch.headers import RECORDED_HEADER
from queueworks.dispatch.services import BulkEnqueueError, BulkEnqueueResult, tasks_enqueue_bulk
from queueworks.taskapi.allowlist import allowed
from queueworks.taskapi.broker import BROKER_ERRORS
from queueworks.taskapi.errors import TaskValidationError
from queueworks.taskapi.outbox import outbox_mark_confirmed, outbox_records_write
from queueworks.taskapi.recorded import outbox_publish_deferred


def tasks_start_bulk(
    *, task: str, kwargs_list: Sequence[Mapping[str, object]], priority: int | None = None,
    user=None,
) -> BulkEnqueueResult:
    """Validate, record and publish many calls of one allowlisted task.

    Every item is checked against the task's argument schema (errors name the
    item, e.g. ``kwargs_list[3]``) before anything is written or sent.  Like
    the Task API's single start, each task gets its PENDING rows (TaskRecord,
    TaskResult), written in the caller's transaction: they are the outbox.
    The batch is published on commit:

    * confirmed in full: every record is marked confirmed;
    * anything less (nothing could be sent: the broker unreachable or
      refusing the queue; cut off halfway, refused in part or not confirmed
      in time): the batch is accepted all the same, its rows are committed;
      the confirmed records are marked and the others (``pending_ids``) are
      published by the outbox sweeper.
    """
    spec = allowed(task) if isinstance(task, str) else None
    if spec is None:
        raise TaskValidationError({"task": [f"'{task}' is not an allowlisted task"]})
    from queueworks.limits.unique import unique_for

    if unique_for(spec.name) is not None:
        # Its key is claimed per call (queueworks/limits/unique.py).
        raise TaskValidationError({"task": [
            f"'{task}' is declared unique: start it one call at a time (POST /api/v1/tasks/)"]})
    errors: dict[str, list[str]] = {}
    for index, kwargs in enumerate(kwargs_list):
        if not isinstance(kwargs, Mapping):
            errors[f"kwargs_list[{index}]"] = ["must be a JSON object"]
            continue
        _, item_errors = spec.bind([], dict(kwargs))
        for problems in item_errors.values():
            errors.setdefault(f"kwargs_list[{index}]", []).extend(problems)
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                 or not 0 <= priority <= 9):
        errors["priority"] = ["must be an integer from 0 to 9"]
    if errors:
        raise TaskValidationError(errors)
    task_ids = [str(uuid.uuid4()) for _ in kwargs_list]
    kwargs_list = [spec.normalized([], dict(kwargs))[1] for kwargs in kwargs_list]
    queue = spec.default_queue
    outbox_records_write(task_name=spec.name, calls=list(zip(task_ids, [[]] * len(task_ids),
                                                             kwargs_list, strict=True)),
                         queue=queue, priority=priority, user=user)
    outcome: dict[str, BulkEnqueueResult] = {}

    def publish():
        outcome["result"] = _publish_recorded_batch(
            task_name=spec.name, task_ids=task_ids, kwargs_list=kwargs_list, queue=queue,
            priority=priority)

    transaction.on_commit(publish)
    return outcome.get("result") or BulkEnqueueResult(
        task_ids=task_ids, queue=queue, seconds=0.0, pending_ids=list(task_ids),
    )


def _publish_recorded_batch(*, task_name: str, task_ids: list[str],
                            kwargs_list: list[dict], queue: str,
                            priority: int | None) -> BulkEnqueueResult:
    started = time.perf_counter()
    try:
        result = tasks_enqueue_bulk(task=task_name, kwargs_list=kwargs_list, priority=priority,
                                    task_ids=task_ids, queue=queue,
                                    headers={RECORDED_HEADER: True})
    except BulkEnqueueError as exc:
        outbox_mark_confirmed(task_ids=exc.confirmed_ids)
        outbox_publish_deferred(task_ids=exc.task_ids, task_name=task_name, error=exc,
                                relay="the outbox sweeper")
        pending_ids = exc.task_ids
    except BROKER_ERRORS as exc:  # committed is accepted: the sweeper publishes them
        outbox_publish_deferred(task_ids=task_ids, task_name=task_name, error=exc,
                                relay="the outbox sweeper")
        pending_ids = task_ids
    else:
        outbox_mark_confirmed(task_ids=task_ids)
        return result
    return BulkEnqueueResult(task_ids=task_ids, queue=queue, seconds=time.perf_counter() - started,
                             pending_ids=pending_ids)
