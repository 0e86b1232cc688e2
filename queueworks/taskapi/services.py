"""Start, cancel and re-run tasks.

These are the write paths of the Task API and are meant to be called by other
code too (the ops dashboard calls ``task_rerun``).  They raise the errors in
``queueworks.taskapi.errors`` (each names the field at fault); nothing is published
when they refuse.

Bookkeeping, per task id:

* ``TaskRecord`` (this app): the exact JSON args/kwargs, queue, priority, who
  asked, and the cancellation that workers check before running the task.
* ``django_celery_results.TaskResult``: the execution state.  ``task_start``
  writes it as PENDING *before* publishing, so a queued task is visible with
  its name and arguments and an id that was never issued is a 404; the worker
  then overwrites it with STARTED / PROGRESS / SUCCESS / FAILURE / REVOKED.

Old results and records are removed by queueworks/taskapi/retention.py.
"""

from __future__ import annotations

import ast
import math
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import states
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

from queueworks.taskapi.allowlist import AllowedTask, allowed
from queueworks.taskapi.broker import broker_connection
from queueworks.taskapi.access import may_cancel, may_see
from queueworks.taskapi.errors import (
    BrokerUnavailable,
    TaskConflict,
    TaskForbidden,
    TaskNotFound,
    TaskValidationError,
)
from queueworks.limits.unique import unique_claim_release
# The outbox writer, here too for callers of the services (the Django task backend).
from queueworks.taskapi.recorded import recorded_task_accept, recorded_task_enqueue  # noqa: F401
from queueworks.taskapi.models import TaskRecord
from queueworks.conf import celery_app
from queueworks.conf import TOPOLOGY
from queueworks.conf import settings as queueworks_settings

app = celery_app()

logger = logging.getLogger(__name__)

PROGRESS = "PROGRESS"
RUNNING_STATES = frozenset({states.STARTED, states.RETRY, PROGRESS})
CANCEL_SIGNALS = ("SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "SIGUSR1")


@dataclass(frozen=True)
class TaskTicket:
    """What a caller gets back for an accepted task."""

    task_id: str
    task: str
    queue: str
    state: str = states.PENDING
    # A unique task's key was held: task_id is the holder's, nothing was started.
    duplicate: bool = False
    # False: the broker did not take the message in time; the task is accepted
    # and its outbox record is published later (queueworks/taskapi/recorded.py).
    # None: not known yet (the caller's transaction publishes on commit).
    published: bool | None = None


@dataclass(frozen=True)
class CancelOutcome:
    task_id: str
    state: str
    terminate: bool
    detail: str


# -- start ---------------------------------------------------------------------

def _validate_start(
    *, task: str, args: Any, kwargs: Any, queue: str | None, priority: Any,
    countdown: Any, eta: datetime | None, now: datetime,
) -> tuple[AllowedTask, str, datetime | None]:
    errors: dict[str, list[str]] = {}
    spec = allowed(task) if isinstance(task, str) else None
    if spec is None:
        raise TaskValidationError({"task": [f"'{task}' is not an allowlisted task"]})
    if not isinstance(args, list):
        errors["args"] = ["must be a JSON array"]
    if not isinstance(kwargs, dict):
        errors["kwargs"] = ["must be a JSON object"]
    if not errors:
        _, bind_errors = spec.bind(args, kwargs)
        errors.update(bind_errors)

    target = queue if queue is not None else spec.default_queue
    if target not in spec.queues:
        errors["queue"] = [
            f"'{target}' is not a queue {task} may run on (allowed: {', '.join(spec.queues)})"
        ]
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9
    ):
        errors["priority"] = ["must be an integer from 0 to 9"]

    max_delay = queueworks_settings.TASKAPI_MAX_DELAY_SECONDS
    run_at = None
    if countdown is not None and eta is not None:
        errors["countdown"] = ["give either countdown or eta, not both"]
    elif countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, (int, float)) \
                or not 0 <= countdown <= max_delay:
            errors["countdown"] = [f"must be a number of seconds from 0 to {max_delay}"]
        else:
            run_at = now + timedelta(seconds=countdown)
    elif eta is not None:
        if timezone.is_naive(eta):
            eta = timezone.make_aware(eta)
        if eta < now:
            errors["eta"] = [f"is in the past ({eta.isoformat()}; now {now.isoformat()})"]
        elif eta > now + timedelta(seconds=max_delay):
            errors["eta"] = [f"is more than {max_delay} seconds ahead"]
        else:
            run_at = eta
    if errors:
        raise TaskValidationError(errors)
    return spec, target, run_at


def task_start(
    *,
    task: str,
    args: list | None = None,
    kwargs: dict | None = None,
    queue: str | None = None,
    priority: int | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
    user=None,
    rerun_of: TaskRecord | None = None,
) -> TaskTicket:
    """Validate and start an allowlisted task on one of its queues.

    Arguments are checked against the task's declared schema, ``queue`` must
    be one the task is allowed on (default: its topology route), ``priority``
    0-9, ``countdown`` seconds or an aware ``eta`` no further ahead than
    ``TASKAPI_MAX_DELAY_SECONDS``.  Raises ``TaskValidationError`` (nothing is
    written or sent).

    The rows are written in the caller's transaction (they are the outbox:
    queueworks/taskapi/outbox.py) and the message is published when it
    commits (immediately in autocommit mode).  Once committed the task is
    accepted: if the broker does not take the message within a bounded time
    the ticket says ``published=False`` and the outbox publishes it later.
    Returns the new task's id and queue.
    """
    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    spec, target, run_at = _validate_start(
        task=task, args=args, kwargs=kwargs, queue=queue, priority=priority,
        countdown=countdown, eta=eta, now=timezone.now(),
    )
    args, kwargs = spec.normalized(args, kwargs)
    claim = recorded_task_accept(task_name=spec.name, args=args, kwargs=kwargs, queue=target,
                                 priority=priority, run_at=run_at, user=user, rerun_of=rerun_of)
    if claim.duplicate:
        return TaskTicket(task_id=claim.task_id, task=spec.name, queue=_queue_of(claim.task_id,
                                                                                 target),
                          state=_state_of(claim.task_id), duplicate=True)
    return TaskTicket(task_id=claim.task_id, task=spec.name, queue=target,
                      published=claim.published)


def _queue_of(task_id: str, default: str) -> str:
    return TaskRecord.objects.filter(task_id=task_id).values_list("queue", flat=True).first() \
        or default


def _state_of(task_id: str) -> str:
    return TaskResult.objects.filter(task_id=task_id).values_list("status", flat=True).first() \
        or states.PENDING


# -- cancel --------------------------------------------------------------------

def _current_state(task_id: str, user=None) -> tuple[TaskRecord | None, TaskResult | None]:
    """The task's rows; a task ``user`` may not read is as unknown as a missing one."""
    record = TaskRecord.objects.filter(task_id=task_id).first()
    result = TaskResult.objects.filter(task_id=task_id).first()
    if (record is None and result is None) or (user is not None and not may_see(user, record)):
        raise TaskNotFound(f"No task with id '{task_id}'.", fields={"task_id": ["not found"]})
    return record, result


def _broadcast_revoke(task_id: str, *, terminate: bool, signal: str) -> None:
    with broker_connection() as conn:
        app.control.revoke(task_id, terminate=terminate, signal=signal, connection=conn)


def task_cancel(
    *, task_id: str, terminate: bool = False, signal: str = "SIGTERM", user=None,
) -> CancelOutcome:
    """Cancel a task; the cancellation is stored and outlives worker restarts.

    * PENDING (queued, scheduled for later, or its worker offline): recorded
      in the database and marked REVOKED at once; workers check the record
      when the message arrives, so it never runs.  The revoke is also
      broadcast (best effort) for workers already holding the message.
    * Running (STARTED/PROGRESS/RETRY): needs ``terminate=True``, which sends
      ``signal`` to the process running it; otherwise ``TaskConflict``.
    * Already finished: ``TaskConflict``.  Already REVOKED: no-op.

    Raises ``TaskNotFound`` for an id that was never issued (or that ``user``
    may not read), ``TaskForbidden`` for a system task (beat's, internal)
    when ``user`` lacks ``taskapi.cancel_system_tasks``, and
    ``BrokerUnavailable`` when a running task cannot be signalled.
    """
    if signal not in CANCEL_SIGNALS:
        raise TaskValidationError({"signal": [f"must be one of {', '.join(CANCEL_SIGNALS)}"]})
    record, result = _current_state(task_id, user)
    if not may_cancel(user, record):
        raise TaskForbidden(
            f"Task {task_id} was not started by a user through the API (beat's or internal); "
            "cancelling it needs the 'taskapi.cancel_system_tasks' permission.",
            fields={"task_id": ["system task"]},
        )
    state = result.status if result else states.PENDING
    if record and record.is_cancelled and state in states.UNREADY_STATES | {PROGRESS}:
        state = states.REVOKED
    if state == states.REVOKED:
        return CancelOutcome(task_id, states.REVOKED, terminate, "Already cancelled.")
    if state in states.READY_STATES:
        raise TaskConflict(
            f"Task {task_id} already finished with state {state}; nothing to cancel.",
            fields={"task_id": [f"already {state}"]},
        )
    running = state in RUNNING_STATES
    if running and not terminate:
        raise TaskConflict(
            f"Task {task_id} is already running ({state}); pass \"terminate\": true to stop it.",
            fields={"terminate": ["required to stop a running task"]},
        )
    if running:
        # Signal first: if the broker is down we must not claim it stopped.
        _broadcast_revoke(task_id, terminate=True, signal=signal)

    now = timezone.now()
    with transaction.atomic():
        if record is None:
            record = TaskRecord.objects.create(
                task_id=task_id, task_name=result.task_name or "",
                queue=TOPOLOGY.queue_for(result.task_name or ""),
            )
        TaskRecord.objects.filter(pk=record.pk).update(
            cancelled_at=now, cancel_terminate=terminate, cancel_signal=signal if terminate else "",
            cancelled_by=user if user is not None and user.is_authenticated else None,
        )
        # Only a task that has not finished becomes REVOKED; a worker that
        # finished it a moment ago keeps its SUCCESS/FAILURE.
        TaskResult.objects.filter(
            task_id=task_id, status__in=[*states.UNREADY_STATES, PROGRESS],
        ).update(status=states.REVOKED, date_done=now)
        # A cancelled unique task frees its key at once (a running one: the
        # signal stops it; its end would free it too).
        unique_claim_release(task_id=task_id)

    detail = "Terminated with {0}.".format(signal) if running else "Cancelled before it ran."
    if not running:
        try:
            _broadcast_revoke(task_id, terminate=False, signal=signal)
        except BrokerUnavailable:
            detail += " (Broker unreachable: the stored cancellation will stop it when delivered.)"
    logger.info("Task API cancelled %s (terminate=%s)", task_id, terminate)
    return CancelOutcome(task_id, states.REVOKED, terminate, detail)


# -- rerun ---------------------------------------------------------------------

def _stored_call(task_id: str, user=None) -> tuple[str, list, dict, str | None, int | None]:
    record, result = _current_state(task_id, user)
    if record is not None and record.task_name:
        return record.task_name, list(record.args), dict(record.kwargs), record.queue, record.priority
    # A task started elsewhere (beat, a service): recover its literal arguments.
    name = result.task_name or ""
    try:
        args = ast.literal_eval(json.loads(result.task_args or '"()"'))
        kwargs = ast.literal_eval(json.loads(result.task_kwargs or '"{}"'))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise TaskConflict(
            f"The stored arguments of task {task_id} cannot be recovered; start it anew.",
            fields={"task_id": ["arguments not recoverable"]},
        ) from None
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise TaskConflict(
            f"The stored arguments of task {task_id} cannot be recovered; start it anew.",
            fields={"task_id": ["arguments not recoverable"]},
        )
    return name, list(args), kwargs, None, None


def task_rerun(*, task_id: str, user=None) -> TaskTicket:
    """Start a new task with the stored name, args, kwargs, queue and priority.

    Raises ``TaskNotFound`` for an unknown id, ``TaskConflict`` (HTTP 409)
    when the task is no longer allowlisted, its stored arguments no longer
    match the schema or its queue is no longer allowed.  Returns the new
    task's ticket (``published`` like ``task_start``'s).
    """
    name, args, kwargs, queue, priority = _stored_call(task_id, user)
    spec = allowed(name)
    if spec is None:
        raise TaskConflict(
            f"Task {task_id} ran '{name}', which is not allowlisted anymore; it cannot be re-run.",
            fields={"task": [f"'{name}' is not allowlisted"]},
        )
    try:
        return task_start(
            task=name, args=args, kwargs=kwargs, queue=queue, priority=priority, user=user,
            rerun_of=TaskRecord.objects.filter(task_id=task_id).first(),
        )
    except TaskValidationError as exc:
        raise TaskConflict(
            f"The stored call of task {task_id} is no longer valid: {exc.detail}",
            fields=exc.fields,
        ) from exc


# -- diagnostics -----------------------------------------------------------------

class DiagnosticError(Exception):
    """Raised on purpose by the diagnostic task (``fail=true``)."""


def diagnostic_run(
    *, seconds: float = 0, fail: bool = False, message: str = "diagnostic",
    on_progress=None, sleep=None,
) -> dict:
    """Run for ``seconds`` reporting progress every second, then succeed or fail."""
    import time

    sleep = sleep or time.sleep
    steps = max(1, math.ceil(seconds)) if seconds else 0
    for step in range(steps):
        sleep(seconds / steps)
        if on_progress:
            on_progress(step + 1, steps)
    if fail:
        raise DiagnosticError(message)
    return {"message": message, "seconds": seconds}
