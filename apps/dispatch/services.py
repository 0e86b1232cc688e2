"""Bulk enqueue: many Celery tasks in one batch, with streamed publisher confirms.

``task.delay()`` with ``confirm_publish`` waits for the broker's confirm after
every message (one network round trip per task, ~1,500 tasks/s at best).  Here
all messages of a batch go out over one channel in confirm mode, and the
confirms are collected once at the end (the broker confirms many messages in
one frame), so a batch costs one round trip however large it is.

The guarantees are the same as a single ``apply_async`` in this project:

* messages are persistent (delivery_mode=2) and go to the durable queue the
  topology routes the task to (declared first, with the same arguments);
* each message is a regular Celery protocol 2 message built by
  ``app.amqp.as_task_v2``, so an ordinary worker consumes it (acks late, time
  limits and priorities as for any other message of that task);
* the call returns only when the broker confirmed every message, and raises
  :class:`BulkEnqueueError` naming the task ids that were refused (nack) or not
  confirmed in time, so the caller knows exactly what to send again.
"""

from __future__ import annotations

import importlib
import select
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from amqp import Message
from amqp.serialization import dumps as amqp_dumps
from django.db import transaction
from kombu.common import maybe_declare
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.utils.json import dumps

from apps.dispatch.encoding import (
    SHORTSTR_MAX,
    BatchEncoder,
    publish_frames,
    publish_method_payload,
)
from projectname.topology import TOPOLOGY

# basic.publish arguments: ticket, exchange, routing key, mandatory, immediate.
_PUBLISH_SIGNATURE = "Bssbb"
# Read confirms that already arrived every this many messages, so neither
# side's socket buffer fills up during a very large batch.
_DRAIN_EVERY = 1000
# Publish frames are written to the socket in chunks of about this size.
_WRITE_BYTES = 64 * 1024


_timing = threading.local()

# The body's third item (callbacks, errbacks, chain, chord): none of them, which
# Celery's protocol spells ``None`` (a worker reads ``embed or {}``).
_EMBED = None

# Celery headers that a worker reads with a default when they are absent
# (celery/worker/request.py, app/task.py Context), with that default.  The
# protocol (docs: internals/protocol) lists them as optional; sending them
# anyway was 9 of a noop message's 19 headers, decoded by every worker for
# every message.  A header with any other value is kept.
_ABSENT_MEANS = {
    "shadow": None, "eta": None, "expires": None, "group_index": None, "retries": 0,
    "timelimit": (None, None), "replaced_task_nesting": 0, "stamped_headers": None,
    "stamps": {},
}


class BulkEnqueueError(Exception):
    """Some messages of a batch were not confirmed by the broker."""

    def __init__(self, message: str, *, task_ids: list[str]):
        super().__init__(message)
        self.task_ids = task_ids


@dataclass(frozen=True)
class BulkEnqueueResult:
    task_ids: list[str]
    queue: str
    seconds: float


def _celery_app():
    from projectname.celery import app

    return app


def _resolve_task(task):
    app = _celery_app()
    if isinstance(task, str):
        if task not in app.tasks:
            # Outside a worker, Celery imports an app's tasks module lazily:
            # import it if it belongs to an installed app.
            from django.apps import apps

            module = task.rpartition(".")[0]
            if any(module == f"{config.name}.tasks" for config in apps.get_app_configs()):
                importlib.import_module(module)
        try:
            return app.tasks[task]
        except KeyError:
            raise ValueError(f"unknown task '{task}'") from None
    return task


def tasks_enqueue_bulk(
    *,
    task,
    kwargs_list: Sequence[Mapping[str, object]],
    priority: int | None = None,
    confirm_timeout: float = 30.0,
    task_ids: Sequence[str] | None = None,
    headers: Mapping[str, object] | None = None,
    queue: str | None = None,
) -> BulkEnqueueResult:
    """Publish one message per item of ``kwargs_list`` for ``task``; wait for all confirms.

    ``task`` is a Celery task or its dotted name.  Returns the task ids in the
    order of ``kwargs_list``.  ``task_ids`` may be given to choose them (they
    must be unique), e.g. when the ids were handed out before a commit.
    ``headers`` are added to every message's headers (as ``apply_async(headers=...)``);
    ``queue`` overrides the topology's route (a declared queue).
    """
    app = _celery_app()
    task = _resolve_task(task)
    count = len(kwargs_list)
    if task_ids is None:
        task_ids = [str(uuid.uuid4()) for _ in range(count)]
    elif len(task_ids) != count:
        raise ValueError("task_ids must have one id per item of kwargs_list")
    task_ids = list(task_ids)
    if any(not isinstance(task_id, str) or len(task_id.encode("utf-8")) > SHORTSTR_MAX
           for task_id in task_ids):
        # The id is also the message's correlation_id, an AMQP short string.
        raise ValueError(f"every task id must be a string of at most {SHORTSTR_MAX} bytes")
    if priority is None:
        priority = app.conf.task_default_priority
    queue_name = _queue_name(app, task, queue)
    started = time.perf_counter()
    if not count:
        return BulkEnqueueResult(task_ids=[], queue=queue_name, seconds=0.0)
    build = _MessageBuilder(app, task, priority, headers)
    # Every body first: bad input raises before anything is published.  The
    # rest of each message is encoded while the broker works on the previous
    # ones (publishing is broker-bound; encoding first left it idle).
    prepared = [build.prepare(kwargs) for kwargs in kwargs_list]
    messages = (build.message(task_id, item) for task_id, item in zip(task_ids, prepared))
    with app.pool.acquire(block=True) as connection:
        connection.ensure_connection(max_retries=3)
        # Declared once per connection (cached), with the topology's arguments.
        maybe_declare(app.amqp.queues[queue_name], connection.default_channel)
        _publish_confirmed(
            connection.connection, messages, count=count, routing_key=queue_name,
            task_ids=task_ids, confirm_timeout=confirm_timeout,
        )
    return BulkEnqueueResult(
        task_ids=task_ids, queue=queue_name, seconds=time.perf_counter() - started,
    )


def tasks_enqueue_bulk_on_commit(
    *, task, kwargs_list: Sequence[Mapping[str, object]], priority: int | None = None,
) -> list[str]:
    """Like :func:`tasks_enqueue_bulk`, after the current transaction commits.

    Returns the task ids now; the messages are published on commit (never, on
    rollback), as ``delay_on_commit`` does for one task.
    """
    task_ids = [str(uuid.uuid4()) for _ in kwargs_list]
    kwargs_list = [spec.normalized([], dict(kwargs))[1] for kwargs in kwargs_list]
    transaction.on_commit(lambda: tasks_enqueue_bulk(
        task=task, kwargs_list=kwargs_list, priority=priority, task_ids=task_ids,
    ))
    return task_ids


def _queue_name(app, task, queue: str | None) -> str:
    """``queue`` or the topology's route for ``task``; a declared queue either way."""
    name = queue or TOPOLOGY.queue_for(task.name)
    if name not in app.amqp.queues:
        raise ValueError(f"unknown queue '{name}'")
    return name


def _task_headers(app, task, task_id: str, *, args: tuple, kwargs: dict,
                  kwargsrepr: str | None = None,
                  extra: Mapping[str, object] | None = None) -> dict:
    """Celery's protocol 2 headers for one call (``app.amqp.as_task_v2``)."""
    headers, _properties, _body, _sent_event = app.amqp.as_task_v2(
        task_id, task.name, args=args, kwargs=kwargs,
        time_limit=task.time_limit, soft_time_limit=task.soft_time_limit,
        ignore_result=task.ignore_result, origin=anon_nodename(), kwargsrepr=kwargsrepr,
    )
    for key, default in _ABSENT_MEANS.items():
        if key in headers and _same(headers[key], default):
            del headers[key]
    if extra:
        headers.update(extra)
    return headers


def _same(value, default) -> bool:
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and tuple(value) == default
    return value == default and type(value) is type(default)


def _message_properties(app, priority: int | None) -> dict:
    """The AMQP properties every task message of the project carries."""
    return {
        "content_type": "application/json", "content_encoding": "utf-8",
        "delivery_mode": 2,
        "priority": app.conf.task_default_priority if priority is None else priority,
        "reply_to": "",
        # Publish time (RabbitMQ's head_message_timestamp feeds the wait-time alerts).
        "timestamp": int(time.time()),
    }


class _MessageBuilder:
    """Builds the task messages of one batch: ``builder(task_id, kwargs) -> amqp.Message``.

    The first message's headers come from ``app.amqp.as_task_v2`` (Celery's own
    protocol 2 builder); later ones differ only in id, root id and kwargs repr,
    which is what ``as_task_v2`` would produce for them.  Their AMQP properties
    are encoded once per batch (apps/dispatch/encoding.py).  ``prepare`` does
    the part that can fail on bad input (the JSON body), ``message`` the rest,
    so a batch can be checked whole before anything is published.
    """

    def __init__(self, app, task, priority: int,
                 extra_headers: Mapping[str, object] | None = None):
        self.app, self.task, self.extra_headers = app, task, extra_headers
        self.maxsize = app.amqp.kwargsrepr_maxsize
        self.properties = _message_properties(app, priority)
        self.encoder: BatchEncoder | None = None

    def prepare(self, kwargs: Mapping[str, object]) -> tuple[bytes, str, dict]:
        """(body, kwargs repr, kwargs); TypeError/ValueError for what JSON cannot carry."""
        if not isinstance(kwargs, Mapping):
            raise TypeError("every item of kwargs_list must be a mapping of keyword arguments")
        kwargs = dict(kwargs)
        body = dumps(((), kwargs, _EMBED)).encode("utf-8")
        kwargsrepr = repr(kwargs)
        if len(kwargsrepr) > self.maxsize:
            kwargsrepr = saferepr(kwargs, self.maxsize)
        return body, kwargsrepr, kwargs

    def message(self, task_id: str, prepared: tuple[bytes, str, dict]) -> Message:
        body, kwargsrepr, kwargs = prepared
        if self.encoder is None:
            self.encoder = BatchEncoder(
                _task_headers(self.app, self.task, task_id, args=(), kwargs=kwargs,
                              kwargsrepr=kwargsrepr, extra=self.extra_headers),
                self.properties)
        return self.encoder.message(body, task_id=task_id, kwargsrepr=kwargsrepr)

    def __call__(self, task_id: str, kwargs: Mapping[str, object]) -> Message:
        return self.message(task_id, self.prepare(kwargs))


class _Confirms:
    """Tracks basic.ack / basic.nack for delivery tags base+1..base+count of one channel."""

    def __init__(self, count: int, base: int = 0):
        self.count = count
        self.base = base
        self.state = bytearray(count + 1)  # 0 pending, 1 acked, 2 nacked
        self.settled = 0
        self.floor = 0  # every tag <= floor (relative) is settled

    def _settle(self, tag: int, value: int) -> None:
        if 0 < tag <= self.count and not self.state[tag]:
            self.state[tag] = value
            self.settled += 1

    def _on(self, value: int):
        def callback(delivery_tag: int, multiple: bool) -> None:
            tag = delivery_tag - self.base
            if multiple:
                for relative in range(self.floor + 1, min(tag, self.count) + 1):
                    self._settle(relative, value)
                self.floor = max(self.floor, tag)
            else:
                self._settle(tag, value)
        return callback

    def tags(self, value: int) -> list[int]:
        return [tag for tag in range(1, self.count + 1) if self.state[tag] == value]


class _ConfirmChannel:
    """One channel in confirm mode per pooled connection, reused by every batch.

    Opening a channel and switching it to confirm mode are two round trips;
    reusing it leaves one per batch (the confirms).  Delivery tags keep
    counting across batches, so each batch tracks its own range.
    """

    def __init__(self, raw_connection):
        self.channel = raw_connection.channel()
        self.channel.confirm_select()
        self.published = 0
        self.current: _Confirms | None = None
        self.channel.events["basic_ack"].add(lambda tag, multiple: self._route(1, tag, multiple))
        self.channel.events["basic_nack"].add(lambda tag, multiple: self._route(2, tag, multiple))

    def _route(self, value: int, tag: int, multiple: bool) -> None:
        if self.current is not None:
            self.current._on(value)(tag, multiple)

    @property
    def usable(self) -> bool:
        return self.channel.is_open

    def close(self) -> None:
        try:
            self.channel.close()
        except Exception:  # noqa: BLE001 - dropping it either way
            pass


def _confirm_channel(raw_connection) -> _ConfirmChannel:
    cached = getattr(raw_connection, "_dispatch_confirm_channel", None)
    if cached is None or not cached.usable:
        cached = _ConfirmChannel(raw_connection)
        raw_connection._dispatch_confirm_channel = cached
    return cached


def _publish_confirmed(raw_connection, messages: Iterable[Message], *, count: int,
                       routing_key: str, task_ids: list[str], confirm_timeout: float) -> None:
    """Publish the ``count`` ``messages`` and wait for every confirm.

    ``messages`` may be a generator: each one is built as it is written."""
    holder = _confirm_channel(raw_connection)
    channel = holder.channel
    confirms = holder.current = _Confirms(count, base=holder.published)
    complete = False
    try:
        # The frames channel._basic_publish would send (the plain publish even
        # on a connection whose channels wait for a confirm after every
        # message, kombu's confirm_publish), minus the per-message work that
        # is the same for the whole batch: the method arguments are encoded
        # once, the frames of many messages go out in one write of about
        # _WRITE_BYTES, and pending frames are read every _DRAIN_EVERY
        # messages, not before each one.
        transport = raw_connection.transport
        sock = transport.sock
        channel_id = channel.channel_id
        frame_max = raw_connection.frame_max
        method_payload = publish_method_payload(
            amqp_dumps(_PUBLISH_SIGNATURE, (0, "", routing_key, False, False)))
        pending: list[bytes] = []
        pending_bytes = 0

        def flush() -> None:
            nonlocal pending_bytes
            if pending:
                transport.write(b"".join(pending))
                raw_connection.bytes_sent += 1  # py-amqp's heartbeat bookkeeping
                holder.published += len(pending)
                pending.clear()
                pending_bytes = 0

        for index, message in enumerate(messages, start=1):
            frames = publish_frames(channel_id, method_payload, message, frame_max)
            pending.append(frames)
            pending_bytes += len(frames)
            if pending_bytes >= _WRITE_BYTES:
                flush()
            if index % _DRAIN_EVERY == 0:
                flush()
                while select.select([sock], [], [], 0)[0]:
                    raw_connection.drain_events(timeout=0.1)
        flush()
        deadline = time.monotonic() + confirm_timeout
        while confirms.settled < confirms.count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                raw_connection.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        complete = confirms.settled == confirms.count
    finally:
        holder.current = None
        if not complete:
            # Late confirms of this batch must not be mistaken for the next one's.
            holder.close()
            raw_connection._dispatch_confirm_channel = None
    nacked = [task_ids[tag - 1] for tag in confirms.tags(2)]
    unconfirmed = [task_ids[tag - 1] for tag in confirms.tags(0)]
    if nacked or unconfirmed:
        raise BulkEnqueueError(
            f"broker refused {len(nacked)} and did not confirm {len(unconfirmed)} "
            f"of {confirms.count} messages within {confirm_timeout}s",
            task_ids=nacked + unconfirmed,
        )


# -- one task from a request: published now, confirmed in the background ---------
def task_enqueue(
    *,
    task,
    args: Sequence[object] = (),
    kwargs: Mapping[str, object] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    task_id: str | None = None,
    headers: Mapping[str, object] | None = None,
    wait_confirm: float | None = None,
) -> str:
    """Publish one call of ``task`` through this process's pooled publisher.

    The message is the one ``apply_async`` would send (``app.amqp.as_task_v2``:
    persistent, on the topology's durable queue unless ``queue`` is given);
    the broker's confirm is collected in the background and an unconfirmed
    message is re-sent (apps/dispatch/publisher.py), so the call costs one
    socket write instead of a round trip to the broker's disk.
    ``wait_confirm`` (seconds) waits for the confirm as well.  Returns the id.
    """
    from apps.dispatch.publisher import process_publisher

    started, started_cpu = time.perf_counter(), time.thread_time()
    app = _celery_app()
    task = _resolve_task(task)
    task_id = task_id or str(uuid.uuid4())
    queue_name = _queue_name(app, task, queue)
    kwargs = dict(kwargs or {})
    message_headers = _task_headers(app, task, task_id, args=tuple(args), kwargs=kwargs,
                                    extra=headers)
    message = Message(dumps((tuple(args), kwargs, _EMBED)).encode("utf-8"),
                      application_headers=message_headers, correlation_id=task_id,
                      **_message_properties(app, priority))
    process_publisher().publish(message, routing_key=queue_name, wait_confirm=wait_confirm)
    finished = time.perf_counter()
    _timing.last = EnqueueTiming(finished, finished - started, time.thread_time() - started_cpu)
    return task_id


class EnqueueTiming(NamedTuple):
    finished: float
    #: Wall time of the call.
    seconds: float
    #: CPU time this thread spent in it: the wall time minus any wait (for a
    #: core, a lock, the socket); the difference shows an oversubscribed host.
    cpu_seconds: float


def last_enqueue_timing(*, since: float) -> EnqueueTiming | None:
    """This thread's last :func:`task_enqueue`, if it ended after ``since`` (a
    ``time.perf_counter()`` value): views report it."""
    timing = getattr(_timing, "last", None)
    return timing if timing is not None and timing.finished >= since else None


def task_enqueue_on_commit(**kwargs) -> str:
    """:func:`task_enqueue` once the current transaction commits; returns the id now."""
    task_id = kwargs.pop("task_id", None) or str(uuid.uuid4())
    transaction.on_commit(lambda: task_enqueue(task_id=task_id, **kwargs))
    return task_id


# -- the HTTP API's bulk start (POST /api/v1/tasks/bulk/) ------------------------
def tasks_start_bulk(
    *, task: str, kwargs_list: Sequence[Mapping[str, object]], priority: int | None = None,
    user=None,
) -> BulkEnqueueResult:
    """Validate, record and publish many calls of one allowlisted task.

    Every item is checked against the task's argument schema (errors name the
    item, e.g. ``kwargs_list[3]``) before anything is written or sent.  Like
    the Task API's single start, each task gets its PENDING rows (TaskRecord,
    TaskResult) so ``GET /api/v1/tasks/<id>/`` knows it; they are written and
    the batch is published on commit.  If the broker is unreachable the rows
    are removed again and ``BrokerUnavailable`` is raised; if it confirmed only
    part of the batch, the rows stay and the error lists the unconfirmed ids.
    """
    from apps.taskapi.allowlist import allowed
    from apps.taskapi.errors import TaskValidationError

    spec = allowed(task) if isinstance(task, str) else None
    if spec is None:
        raise TaskValidationError({"task": [f"'{task}' is not an allowlisted task"]})
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
    outcome: dict[str, BulkEnqueueResult] = {}

    def record_and_publish():
        outcome["result"] = _record_and_publish_bulk(
            spec=spec, task_ids=task_ids, kwargs_list=kwargs_list, priority=priority, user=user,
        )

    transaction.on_commit(record_and_publish)
    return outcome.get("result") or BulkEnqueueResult(
        task_ids=task_ids, queue=spec.default_queue, seconds=0.0,
    )


def _record_and_publish_bulk(*, spec, task_ids, kwargs_list, priority, user) -> BulkEnqueueResult:
    import json

    from celery import states
    from django_celery_results.models import TaskResult
    from kombu.exceptions import OperationalError

    from apps.taskapi.errors import BrokerUnavailable
    from apps.taskapi.models import RECORDED_HEADER, TaskRecord

    queue = spec.default_queue
    requested_by = user if user is not None and getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        TaskRecord.objects.bulk_create([
            TaskRecord(task_id=task_id, task_name=spec.name, args=[], kwargs=kwargs,
                       queue=queue, priority=priority, requested_by=requested_by)
            for task_id, kwargs in zip(task_ids, kwargs_list, strict=True)
        ])
        TaskResult.objects.bulk_create([
            TaskResult(task_id=task_id, task_name=spec.name, status=states.PENDING,
                       task_args=json.dumps("()"), task_kwargs=json.dumps(saferepr(kwargs)),
                       content_type="application/json", content_encoding="utf-8",
                       meta=json.dumps({"children": []}))
            for task_id, kwargs in zip(task_ids, kwargs_list, strict=True)
        ], ignore_conflicts=True)
    try:
        return tasks_enqueue_bulk(task=spec.name, kwargs_list=kwargs_list, priority=priority,
                                  task_ids=task_ids, headers={RECORDED_HEADER: True})
    except BulkEnqueueError as exc:
        raise BrokerUnavailable(
            f"{exc}. Those tasks may not run; the others were accepted.",
            fields={"task_ids": exc.task_ids},
        ) from exc
    except (OperationalError, OSError) as exc:
        TaskResult.objects.filter(task_id__in=task_ids, status=states.PENDING).delete()
        TaskRecord.objects.filter(task_id__in=task_ids).delete()
        raise BrokerUnavailable(
            f"The message broker is unreachable: {exc}. Nothing was sent."
        ) from exc
