"""The Task API's outbox: an accepted task is a row before it is a message.

What ``202 Accepted`` stands on:

1. ``outbox_records_write`` writes the task's ``TaskRecord`` (and its PENDING
   ``TaskResult``) in the caller's transaction; the message is published when
   that transaction commits.  A rolled-back caller publishes nothing.
2. When the broker confirms the message, the record is marked
   (``confirmed_at``): for a single start the pooled publisher's confirm
   reader hands the ids to ``ConfirmMarker``, which writes them in batches
   from a thread of its own, so the request never waits for the broker's disk.
3. ``outbox_sweep`` (beat, ``taskapi-outbox-sweep`` in projectname/topology.py,
   on the consumed ``main_worker`` queue) publishes again every record still
   unconfirmed ``TASKAPI_OUTBOX_REPUBLISH_AFTER_SECONDS`` after it was
   accepted: the web process died before publishing or before the confirm, the
   connection broke, the broker lost the message.  A record whose task a
   worker already started, or that was cancelled, is only marked.

A start the broker does not take in time (unreachable, a lost connection,
no answer within ``TASKAPI_BROKER_TIMEOUT``) is accepted all the same: its
record stays here, the answer says ``"published": false`` and the sweeper (or
sooner the web process's publisher, queueworks/taskapi/recorded.py) publishes it.

So a task may be published twice (its first message was on its way when the
process died, then the sweeper sends it again): delivery is at least once,
with the same task id.  Effects stay exactly once the way every effect of
this project does, keyed in the same transaction as the effect
(``queueworks.reliability.effects.effect_apply``).  A message the broker refuses
outright (a channel error) is not sent again: the record keeps the reason in
``publish_error`` and the task's result becomes FAILURE with it.
"""

from __future__ import annotations

import json
import logging
import queue as queue_module
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from amqp.exceptions import AMQPError, ChannelError, MessageNacked
from celery import states
from celery.utils.saferepr import saferepr
from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError
from queueworks.conf import settings as queueworks_settings
from queueworks.core.fork_guard import background_writes

logger = logging.getLogger(__name__)

_CHUNK = 500


def _encode_repr(value) -> str:
    # What django-celery-results stores for args/kwargs (the JSON of a repr).
    return json.dumps(saferepr(value))


# -- writing and marking -------------------------------------------------------------
def outbox_records_write(
    *, task_name: str, calls: Sequence[tuple[str, list, dict]], queue: str,
    priority: int | None, eta: datetime | None = None, user=None, rerun_of=None,
) -> None:
    """The PENDING rows of ``calls`` (task id, args, kwargs), in the caller's transaction."""
    from django_celery_results.models import TaskResult

    from queueworks.taskapi.models import TaskRecord

    requested_by = user if user is not None and getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        TaskRecord.objects.bulk_create([
            TaskRecord(task_id=task_id, task_name=task_name, args=args, kwargs=kwargs,
                       queue=queue, priority=priority, eta=eta, requested_by=requested_by,
                       rerun_of=rerun_of)
            for task_id, args, kwargs in calls
        ])
        TaskResult.objects.bulk_create([
            TaskResult(task_id=task_id, task_name=task_name, status=states.PENDING,
                       task_args=_encode_repr(args), task_kwargs=_encode_repr(kwargs),
                       content_type="application/json", content_encoding="utf-8",
                       meta=json.dumps({"children": []}))
            for task_id, args, kwargs in calls
        ], ignore_conflicts=True)


def outbox_deferred_count(*, task_name: str, amount: int = 1) -> None:
    """Count accepted calls the broker did not take at once (the outbox relays
    them): ``projectname_taskapi_outbox_deferred_total{task}`` on /metrics."""
    from queueworks.metrics import names
    from queueworks.metrics.services import task_tallies_add

    minute = timezone.now().replace(second=0, microsecond=0)
    task_tallies_add(deltas={(task_name, minute, names.OUTBOX_DEFERRED_KEY): float(amount)})


def outbox_mark_confirmed(*, task_ids: Sequence[str]) -> int:
    """The broker confirmed these tasks' messages; returns how many records changed."""
    from queueworks.taskapi.models import TaskRecord

    now, marked = timezone.now(), 0
    for start in range(0, len(task_ids), _CHUNK):
        marked += TaskRecord.objects.filter(
            task_id__in=list(task_ids[start:start + _CHUNK]), confirmed_at__isnull=True,
        ).update(confirmed_at=now)
    return marked


def outbox_mark_refused(*, task_id: str, reason: str) -> None:
    """The broker refused this task's message itself: it is never sent again."""
    from django_celery_results.models import TaskResult

    from queueworks.limits.models import UniqueClaim
    from queueworks.taskapi.models import TaskRecord

    now = timezone.now()
    with transaction.atomic():
        TaskRecord.objects.filter(task_id=task_id).update(publish_error=reason,
                                                          confirmed_at=now)
        TaskResult.objects.filter(task_id=task_id, status=states.PENDING).update(
            status=states.FAILURE, date_done=now,
            result=json.dumps({"exc_type": "PublishRefused", "exc_message": [reason],
                               "exc_module": "queueworks.dispatch.publisher"}))
        UniqueClaim.objects.filter(task_id=task_id).delete()
    logger.critical("Task %s was accepted but the broker refused its message: %s",
                    task_id, reason)


# -- marking confirms from the pooled publisher ---------------------------------------
class ConfirmMarker:
    """Marks outbox records from the publisher's confirm reader, off its thread.

    The reader must never wait for the database; it queues the ids and a
    thread of this class writes them in batches (one UPDATE for many
    confirms).  An id lost here (the process dies first) only means the
    sweeper publishes that task once more.
    """

    def __init__(self, *, batch_seconds: float = 0.05):
        self.batch_seconds = batch_seconds
        self._queue: queue_module.SimpleQueue = queue_module.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def confirmed(self, messages) -> None:
        ids = [task_id for task_id in map(_recorded_task_id, messages) if task_id]
        if ids:
            self._put(("confirmed", ids))

    def refused(self, message, error: Exception) -> None:
        task_id = _recorded_task_id(message)
        if task_id:
            self._put(("refused", task_id, str(error)))

    def flush(self, timeout: float = 5.0) -> bool:
        """Until everything queued so far is written (tests, process exit)."""
        deadline = time.monotonic() + timeout
        while not (self._queue.empty() and self._idle.is_set()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _put(self, item) -> None:
        self._idle.clear()
        self._queue.put(item)
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="outbox-marker",
                                                    daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            self._idle.clear()
            deadline = time.monotonic() + self.batch_seconds
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    items.append(self._queue.get(timeout=remaining))
                except queue_module.Empty:
                    break
            try:
                # No fork of this process in the middle of these writes
                # (queueworks/core/fork_guard.py).
                with background_writes():
                    close_old_connections()
                    confirmed = [task_id for item in items if item[0] == "confirmed"
                                 for task_id in item[1]]
                    if confirmed:
                        outbox_mark_confirmed(task_ids=confirmed)
                    for item in items:
                        if item[0] == "refused":
                            outbox_mark_refused(task_id=item[1], reason=item[2])
            except Exception:  # noqa: BLE001 - the sweeper covers what is not marked
                logger.exception("Could not mark %d outbox records; the sweeper will "
                                 "publish them again.", len(items))
            finally:
                if self._queue.empty():
                    self._idle.set()


def _recorded_task_id(message) -> str | None:
    from queueworks.dispatch.headers import RECORDED_HEADER

    headers = getattr(message, "properties", {}).get("application_headers") or {}
    return headers.get("id") if headers.get(RECORDED_HEADER) else None


_marker: ConfirmMarker | None = None
_marker_lock = threading.Lock()


def confirm_marker() -> ConfirmMarker:
    """This process's marker (its thread starts on first use, after any fork)."""
    global _marker
    with _marker_lock:
        if _marker is None:
            _marker = ConfirmMarker()
    return _marker


# -- the sweeper --------------------------------------------------------------------
@dataclass(frozen=True)
class SweepOutcome:
    #: Records published again (and confirmed this time).
    republished: int
    #: Records only marked: a worker already has the task, or it was cancelled.
    marked: int
    #: Records the broker refused outright (marked FAILURE, never sent again).
    refused: int
    #: Records still unconfirmed (the broker unreachable): the next sweep tries again.
    left: int


def outbox_sweep(*, older_than: float | None = None, limit: int = 5000) -> SweepOutcome:
    """Publish again the records unconfirmed ``older_than`` seconds after acceptance.

    Default bound: ``TASKAPI_OUTBOX_REPUBLISH_AFTER_SECONDS``.  Each run takes
    the oldest ``limit`` records; two sweeps at once only publish some tasks
    twice (harmless, see the module's docstring).
    """
    from django_celery_results.models import TaskResult

    from queueworks.taskapi.models import TaskRecord

    bound = queueworks_settings.TASKAPI_OUTBOX_REPUBLISH_AFTER_SECONDS if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=bound)
    records = list(TaskRecord.objects.filter(confirmed_at__isnull=True, accepted_at__lte=cutoff)
                   .order_by("accepted_at")[:limit])
    if not records:
        return SweepOutcome(0, 0, 0, 0)
    status = dict(TaskResult.objects.filter(task_id__in=[r.task_id for r in records])
                  .values_list("task_id", "status"))
    settled = [r.task_id for r in records
               if r.cancelled_at is not None or status.get(r.task_id, states.PENDING)
               != states.PENDING]
    outbox_mark_confirmed(task_ids=settled)
    waiting = [r for r in records if r.task_id not in set(settled)]
    republished = refused = 0
    for group in _groups(waiting):
        sent, refused_here = _republish(group)
        republished += sent
        refused += refused_here
    left = len(waiting) - republished - refused
    if waiting:
        logger.warning("Outbox sweep: %d unconfirmed tasks published again, %d refused, "
                       "%d left for the next sweep.", republished, refused, left)
    return SweepOutcome(republished, len(settled), refused, left)


def _groups(records) -> list[list]:
    """Records that can go out as one bulk batch (same task, queue, priority;
    keyword arguments only, no ETA); every other record alone."""
    batches: dict[tuple, list] = {}
    alone = []
    for record in records:
        if record.args or record.eta is not None:
            alone.append([record])
        else:
            batches.setdefault((record.task_name, record.queue, record.priority), []).append(
                record)
    return list(batches.values()) + alone


def _republish(group) -> tuple[int, int]:
    """(confirmed, refused) for one group."""
    from queueworks.dispatch.bulk import tasks_enqueue_bulk
    from queueworks.dispatch.confirms import BulkEnqueueError
    from queueworks.dispatch.headers import RECORDED_HEADER

    first = group[0]
    if len(group) > 1 or (not first.args and first.eta is None):
        task_ids = [r.task_id for r in group]
        try:
            tasks_enqueue_bulk(task=first.task_name, kwargs_list=[r.kwargs for r in group],
                               priority=first.priority, task_ids=task_ids, queue=first.queue,
                               headers={RECORDED_HEADER: True})
        except BulkEnqueueError as exc:
            outbox_mark_confirmed(task_ids=exc.confirmed_ids)
            if not isinstance(exc.__cause__, ChannelError):
                logger.warning("Outbox sweep: %s", exc)
                return len(exc.confirmed_ids), 0
            # One message the broker refuses: find it by sending them one by one.
            confirmed = set(exc.confirmed_ids)
            results = [_republish_one(r) for r in group if r.task_id not in confirmed]
            return (len(confirmed) + sum(r == "sent" for r in results),
                    sum(r == "refused" for r in results))
        except ValueError as exc:  # a task or queue gone from the code/topology
            for record in group:
                outbox_mark_refused(task_id=record.task_id, reason=str(exc))
            return 0, len(group)
        outbox_mark_confirmed(task_ids=task_ids)
        return len(task_ids), 0
    outcome = _republish_one(first)
    return int(outcome == "sent"), int(outcome == "refused")


def _republish_one(record) -> str:
    """'sent', 'refused' or 'failed' (the broker unreachable: next sweep)."""
    from queueworks.dispatch.headers import RECORDED_HEADER
    from queueworks.conf import celery_app
    app = celery_app()

    from queueworks.limits.fair import fair_queue_for

    queue = fair_queue_for(record.task_name, record.queue, record.args, record.kwargs)
    options = {"queue": queue, "headers": {RECORDED_HEADER: True}}
    if record.priority is not None:
        options["priority"] = record.priority
    if record.eta is not None:
        options["eta"] = record.eta
    try:
        # confirm_publish is on for the app's connections: this waits for the confirm.
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=3)
            app.send_task(record.task_name, args=list(record.args), kwargs=dict(record.kwargs),
                          task_id=record.task_id, connection=connection, **options)
    except ChannelError as exc:
        outbox_mark_refused(task_id=record.task_id, reason=str(exc))
        return "refused"
    except (AMQPError, MessageNacked, OperationalError, OSError) as exc:
        logger.warning("Outbox sweep could not publish %s: %s", record.task_id, exc)
        return "failed"
    outbox_mark_confirmed(task_ids=[record.task_id])
    return "sent"
