"""The lean path: a task strategy that runs a plain message inline, acks coalesced.

For every message Celery's default strategy builds a ``Request`` object,
sends it through the pool (``execute_using_pool`` -> ``apply_async`` ->
``apply_target`` -> ``fast_trace_task``) and acknowledges it with its own
``basic.ack`` frame.  With the solo pool (queueworks/dispatch/pool.py) none of
that indirection does anything: the task runs inline either way.  Measured
on a noop task, the indirection and the per-message ack were about half of
the worker's CPU per task.

The project's tasks name ``lean_strategy`` as their ``Task.Strategy``
(queueworks/reliability/base.py), Celery's per-task extension point for handling
a received message.  On the bulk lane's solo pool it hands a message that
needs nothing special to ``LeanRunner``, which does what those steps amount
to and no more; on every other worker it is Celery's default strategy,
unchanged:

* the body is decoded once, by kombu exactly as Celery's path decodes it
  (a body that does not decode is poison: rejected without requeue, so
  RabbitMQ dead-letters it, as queueworks/reliability does);
* the task runs through the same tracer Celery uses (``task.__trace__``):
  signals, result storage (only for tasks that keep results), retries,
  ``ReliableTask``'s delivery limit, logging, all unchanged;
* under the worker's soft/hard time limits (queueworks/dispatch/timelimits.py);
* on success the message is acknowledged through ``AckCoalescer``: one
  ``basic.ack(multiple=True)`` per batch instead of one frame per task;
* on failure, retry or reject, a regular Celery ``Request`` is built and
  decides (ack / reject / requeue) exactly as Celery's own code would.

Everything else takes Celery's default strategy, unchanged: messages with an ETA
or expiry, redeliveries, retries, messages the Task API can cancel (they
need the database lookup in queueworks/taskapi/signals.py), revoked ids, stamped
messages while any stamp is revoked (``revoke_by_stamped_headers``), tasks
with acks early or a rate limit, protocol 1 messages, and every message
while the worker sends task events (checked for each message:
``enable_events``/``disable_events`` switch it at runtime).  Acks are
*late*: a message is acknowledged only after its task finished, so a killed
worker's messages
(including a batch whose ack was not yet sent) are redelivered.  A batch is
flushed when it reaches ``batch`` messages, every ``FLUSH_SECONDS``, before
any message takes Celery's normal path, and when the consumer stops.
"""

from __future__ import annotations

from celery import Task, bootsteps
from celery.utils.log import get_logger
from kombu.serialization import loads, prepare_accept_content
from kombu.utils.imports import symbol_by_name

from queueworks.dispatch.compat import amqp as compat_amqp
from queueworks.dispatch.compat import celery as compat_celery
from queueworks.dispatch.compat.amqp import watch_settlements
from queueworks.dispatch.compat.billiard import ExceptionInfo
from queueworks.dispatch.compat.celery import Request, create_request_cls, worker_state
from queueworks.dispatch.headers import RECORDED_HEADER
from queueworks.dispatch.switches import switched_off

logger = get_logger(__name__)

# Coalesced acks wait at most this long (the worker idles: the timer flushes).
FLUSH_SECONDS = 0.05
JSON = "application/json"


class AckCoalescer:
    """Acknowledges finished messages of one channel in batches.

    ``basic.ack(tag, multiple=True)`` settles every unsettled delivery up to
    ``tag``, so it may only be sent while every earlier delivery is finished.
    Messages handed to Celery's own code are *foreign*: the channel's
    settlements are watched (queueworks/dispatch/compat/amqp.py) to see when
    they settle, and while any is unsettled (an ETA message waiting, say),
    finished messages are acknowledged one by one, as Celery would.
    """

    def __init__(self, channel, batch: int):
        self.channel = channel
        self.batch = max(1, batch)
        self.foreign: set[int] = set()
        self.last_tag = 0
        self.pending = 0
        self._settlements = watch_settlements(channel, self.foreign.discard)
        self._ack = self._settlements.ack

    def hand_over(self, delivery_tag: int) -> None:
        """``delivery_tag`` goes to Celery's own code, which settles it itself."""
        self.flush()
        self.foreign.add(delivery_tag)

    def finished(self, delivery_tag: int) -> None:
        if self.foreign:
            self._ack(delivery_tag, False)
            return
        self.last_tag = delivery_tag
        self.pending += 1
        if self.pending >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.pending = 0
            if self.channel.is_open:
                self._ack(self.last_tag, True)

    def detach(self) -> None:
        """Flush, then give the channel its own methods back."""
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - a dead channel: RabbitMQ requeued them
            logger.warning("Could not flush %d coalesced acks; those messages will be "
                           "redelivered.", self.pending)
        self._settlements.restore()


class LeanRunner:
    """Runs plain task messages inline (consumer -> tracer -> coalesced ack)."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.app = consumer.app
        self.pool = consumer.pool
        self.hostname = consumer.hostname
        self.accept = prepare_accept_content(self.app.conf.accept_content)
        self.revoked = worker_state.revoked
        self.revoked_stamps = worker_state.revoked_stamps
        self.utc = self.app.uses_utc_timezone()
        self.rate_limits = not consumer.disable_rate_limits
        self.coalescer: AckCoalescer | None = None
        self._request_classes: dict[str, type] = {}

    def decode_body(self, message):
        """The body as Celery's path decodes it: kombu's ``loads`` (its JSON
        codec reads UTF-8 whatever ``content_encoding`` says)."""
        return loads(message.body, message.content_type, message.content_encoding,
                     accept=self.accept)

    def task_events_on(self) -> bool:
        """Does the worker send task events right now?  ``-E`` or
        ``worker_send_task_events`` at start; ``enable_events`` and
        ``disable_events`` (Flower, ``celery control``) add and remove the
        "task" group at runtime."""
        events = self.consumer.event_dispatcher
        return bool(events is not None and events.enabled
                    and (not events.groups or "task" in events.groups))

    # -- lifecycle (LeanSteps, below) ---------------------------------------------
    def attach(self, channel, prefetch_count: int) -> None:
        # A quarter of the prefetch window: the broker keeps delivering while
        # a batch waits for its ack.
        self.coalescer = AckCoalescer(channel, batch=min(64, max(1, prefetch_count // 4)))

    def detach(self) -> None:
        if self.coalescer is not None:
            self.coalescer.detach()
            self.coalescer = None

    def flush(self) -> None:
        if self.coalescer is not None:
            self.coalescer.flush()

    def hand_over(self, message) -> None:
        coalescer = self.coalescer
        if coalescer is not None and message.channel is coalescer.channel:
            coalescer.hand_over(message.delivery_tag)

    # -- per message ---------------------------------------------------------------
    def eligible(self, message, headers: dict, task) -> bool:
        """Does this message of ``task`` run on the lean path (else Celery's)?"""
        coalescer = self.coalescer
        if (coalescer is None or message.channel is not coalescer.channel
                or message.content_type != JSON):
            return False
        if (headers.get("eta") or headers.get("expires") or headers.get("retries")
                or headers.get(RECORDED_HEADER) or headers.get("id") in self.revoked
                or (self.revoked_stamps and headers.get("stamped_headers"))
                or message.delivery_info.get("redelivered") or self.task_events_on()):
            return False
        # Per message: ``celery control rate_limit`` changes a task's limit at runtime.
        return bool(task.acks_late and not (self.rate_limits and task.rate_limit))

    def run(self, message, headers: dict, task, on_poison) -> None:
        try:
            args, kwargs, embed = self.decode_body(message)
        except Exception as exc:  # noqa: BLE001 - any decode failure is poison
            on_poison(message, exc)
            return
        task_id = headers["id"]
        properties = message.properties
        delivery_info = message.delivery_info
        request = dict(headers)
        request.update(embed or {})
        request.update({
            "args": args, "kwargs": kwargs, "hostname": self.hostname, "is_eager": False,
            "properties": properties,
            "reply_to": properties.get("reply_to"),
            "correlation_id": properties.get("correlation_id"),
            "delivery_info": {
                "exchange": delivery_info.get("exchange"),
                "routing_key": delivery_info.get("routing_key"),
                "priority": properties.get("priority"),
                "redelivered": False,
            },
        })
        hard, soft = headers.get("timelimit") or (None, None)
        try:
            trace = compat_celery.tracer(task)
            retval, info, runtime, _ = self.pool.run_limited(
                lambda: trace(task_id, args, kwargs, request),
                soft or task.soft_time_limit, hard or task.time_limit)
        except Exception:  # noqa: BLE001 - outside the task body (a limit hit the tracer)
            info, retval, runtime = True, ExceptionInfo(), 0.0
        worker_state.total_count[task.name] += 1
        worker_state.all_total_count[0] += 1
        self.pool.task_done()
        if info is None:
            self.coalescer.finished(message.delivery_tag)
            return
        # Failure, retry, reject, ignore: Celery's own Request decides.
        self.coalescer.hand_over(message.delivery_tag)
        request_cls = self._request_class(task)
        req = request_cls(
            message, on_ack=message.ack_log_error, app=self.app,
            on_reject=message.reject_log_error, hostname=self.hostname,
            eventer=None, task=task, connection_errors=self.consumer.connection_errors,
            utc=self.utc,
        )
        # The tracer returned the ExceptionInfo: the same (failed, retval,
        # runtime) triple the pool hands Celery's Request.
        req.on_success((1, retval, runtime))

    def _request_class(self, task):
        cls = self._request_classes.get(task.name)
        if cls is None:
            cls = self._request_classes[task.name] = create_request_cls(
                Request, task, self.pool, self.hostname, None, app=self.app)
        return cls


def lean_path_supported() -> bool:
    """The lean path runs Celery's tracer and Request directly and watches the
    channel's settlements: only on the Celery and py-amqp versions it was
    tested with (queueworks/dispatch/compat/)."""
    return compat_celery.SUPPORTED and compat_amqp.SUPPORTED


def lean_path_wanted(consumer) -> bool:
    """Does ``LeanSteps`` turn the lean path on for this consumer?  Its solo
    pool runs tasks inline, the operator did not switch it off, and Celery
    is the tested version.  ``lean`` is the attribute ``LeanSteps`` sets:
    a consumer without the step never gets a runner."""
    return (hasattr(consumer, "lean") and getattr(consumer.pool, "runs_inline", False)
            and "lean_path" not in switched_off() and lean_path_supported())


def lean_strategy(task, app, consumer, **kwargs):
    """``Task.Strategy`` of the project's tasks (``ReliableTask``).

    Celery builds one handler per task with it, in ``update_strategies()``
    at every consumer (re)start, before ``LeanSteps`` starts.  A consumer
    that will not run the lean path (any pool but the bulk lane's solo pool,
    the path switched off, another Celery) gets the handler of Celery's own
    strategy as is.  Otherwise the runner is looked up per message
    (``consumer.lean``: a reconnection brings a new runner on a new channel);
    a plain message runs inline; before any other, the coalesced acks are
    flushed, then its body is checked (poison is dead-lettered) and Celery's
    handler takes it.
    """
    handler = symbol_by_name(Task.Strategy)(task, app, consumer, **kwargs)
    if not lean_path_wanted(consumer):
        return handler
    accept = prepare_accept_content(app.conf.accept_content)
    on_poison = consumer.on_decode_error  # queueworks/reliability/consumer.py: dead-letters

    def lean_task_handler(message, body, ack, reject, callbacks):
        if body is not None:  # protocol 1: the consumer decoded it already
            return handler(message, body, ack, reject, callbacks)
        runner, headers = consumer.lean, message.headers
        if runner is not None:
            if runner.eligible(message, headers, task):
                return runner.run(message, headers, task, on_poison)
            runner.hand_over(message)
        try:
            loads(message.body, message.content_type, message.content_encoding,
                  accept=accept)
        except Exception as exc:  # noqa: BLE001 - any decode failure is poison
            return on_poison(message, exc)
        return handler(message, body, ack, reject, callbacks)

    # ReliableConsumer leaves the poison check of this task's messages to it.
    lean_task_handler.checks_bodies = True
    return lean_task_handler


class LeanSteps(bootsteps.StartStopStep):
    """Consumer bootstep: turns the lean path on for a solo-pool worker.

    Started after the task consumer exists (and again after every reconnection,
    on the new channel); stopping flushes the coalesced acks first.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c, **kwargs):
        super().__init__(c, **kwargs)
        c.lean = None
        self._timer = None

    def start(self, c):
        if not getattr(c.pool, "runs_inline", False):
            c.lean = None
            return
        if not lean_path_wanted(c):
            c.lean = None
            logger.info("Lean path off: every message takes Celery's own path.")
            return
        runner = c.lean = LeanRunner(c)
        channel = c.task_consumer.channel
        prefetch = 1 if "coalesced_acks" in switched_off() else c.qos.value or 1
        runner.attach(channel, prefetch_count=prefetch)
        self._timer = c.timer.call_repeatedly(FLUSH_SECONDS, runner.flush)
        logger.info("Lean path on: plain task messages run inline, acks coalesced "
                    "(batches of %d).", runner.coalescer.batch)

    def stop(self, c):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        runner, c.lean = c.lean, None
        if runner is not None:
            runner.detach()

    shutdown = stop
