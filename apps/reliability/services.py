"""Delivery guarantees: idempotent effects, the delivery limit, dead letters,
delayed dispatch of long countdowns, and queue liveness.

Public service functions (keyword-only):

* ``effect_apply(key=..., apply=...)``: apply a side effect at most once.
* ``delivery_record(...)``: count a redelivered execution; past the limit the
  message is rejected to the dead-letter exchange.
* ``dead_letters_list(...)`` / ``dead_letter_requeue(...)`` /
  ``dead_letter_discard(...)``: what sits in the dead-letter queue, and putting
  it back on its original queue (used by ``manage.py dead_letters`` and the ops
  dashboard).
* ``delayed_task_store(...)`` / ``delayed_tasks_dispatch(...)``: long
  countdowns wait in the database, not in a worker (RabbitMQ consumer_timeout).
* ``queues_liveness(...)``: consumer count of every topology queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from celery.exceptions import Reject
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.reliability.models import (
    DelayedTask,
    Effect,
    FaultAccount,
    FaultExecution,
    TaskDelivery,
)
from projectname.topology import DEAD_LETTER_QUEUE, DELIVERY_LIMIT, TOPOLOGY

logger = logging.getLogger(__name__)


# -- idempotent effects ---------------------------------------------------------
def effect_apply(*, key: str, apply: Callable[[], object], task_id: str = "") -> bool:
    """Run ``apply()`` unless an effect with ``key`` was already applied.

    The key row and the effect commit in ONE transaction: either both happen
    or neither, so a task delivered twice (a killed worker, a lost ack, a
    broker restart) applies its effect exactly once.  Returns True when the
    effect was applied by this call, False when it had been applied before.
    """
    with transaction.atomic():
        _, created = Effect.objects.get_or_create(key=key, defaults={"task_id": task_id})
        if not created:
            return False
        apply()
    return True


# -- delivery limit -------------------------------------------------------------
class DeliveryLimitExceeded(Reject):
    """Raised instead of running a message that started too many times.

    A ``Reject(requeue=False)``: the worker rejects the message, RabbitMQ moves
    it to the dead-letter exchange, and the result is recorded as FAILURE.
    """

    def __init__(self, reason: str = "", requeue: bool = False):
        super().__init__(reason, requeue=False)

    def __str__(self):
        return str(self.reason)


class RetriesExhausted(Reject):
    """A transient failure that is still failing after the last retry."""

    def __init__(self, reason: str = "", requeue: bool = False):
        super().__init__(reason, requeue=False)

    def __str__(self):
        return str(self.reason)


def delivery_limit_for(task) -> int:
    return int(getattr(task, "max_deliveries", None)
               or getattr(settings, "RELIABILITY_DELIVERY_LIMIT", DELIVERY_LIMIT))


def delivery_record(*, task_id: str, task_name: str, redelivered: bool, limit: int) -> int:
    """Count one execution start of a message; raise past ``limit`` starts.

    First deliveries write nothing (the common path stays cheap).  A message
    RabbitMQ marks *redelivered* was handed out before; it may or may not have
    started then, and we count it as started (a conservative over-count of at
    most one).  Returns the delivery number.
    """
    if not redelivered:
        return 1
    with transaction.atomic():
        row, created = TaskDelivery.objects.select_for_update().get_or_create(
            task_id=task_id, defaults={"task_name": task_name, "deliveries": 2},
        )
        if not created:
            row.deliveries = F("deliveries") + 1
            row.save(update_fields=["deliveries", "updated_at"])
            row.refresh_from_db()
        deliveries = row.deliveries
        if deliveries > limit:
            reason = (
                f"delivery limit exceeded: {task_name}[{task_id}] was delivered "
                f"{deliveries} times and the previous {deliveries - 1} never finished "
                f"(limit {limit}; its worker process died or the worker was lost each time)"
            )
            TaskDelivery.objects.filter(pk=row.pk).update(
                reason=reason, dead_lettered_at=timezone.now(),
            )
    if deliveries > limit:
        logger.error("Dead-lettering %s", reason)
        raise DeliveryLimitExceeded(reason)
    return deliveries


def delivery_reset(*, task_ids: list[str]) -> None:
    """Forget delivery counts (an operator re-queued the messages)."""
    TaskDelivery.objects.filter(task_id__in=task_ids).delete()


# -- dead letters ---------------------------------------------------------------
@dataclass(frozen=True)
class DeadLetter:
    """One message in the dead-letter queue.

    ``id`` is the task id (or the AMQP message id, or a hash of the body for
    messages that carry neither).  ``queue`` is where it died and where
    re-queueing puts it back.  ``reason`` is RabbitMQ's (``rejected``,
    ``expired``, ``maxlen``, ``delivery_limit``); ``detail`` says why in words.
    """

    id: str
    task_name: str
    queue: str
    reason: str
    detail: str
    count: int
    died_at: datetime | None
    args: str

    def as_dict(self) -> dict:
        data = asdict(self)
        data["died_at"] = self.died_at.isoformat() if self.died_at else None
        return data


def _dead_letter_id(message) -> str:
    headers = message.headers or {}
    properties = message.properties or {}
    if headers.get("id"):
        return str(headers["id"])
    if properties.get("message_id"):
        return str(properties["message_id"])
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    return "body-" + hashlib.sha1(body).hexdigest()[:16]


def _describe(message, known_tasks) -> tuple[str, str, str]:
    """(task name, detail, args preview) of a dead-lettered message."""
    headers = message.headers or {}
    task_name = str(headers.get("task") or "")
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    details = []
    preview = ""
    try:
        if message.content_type not in (None, "", "application/json"):
            raise ValueError(f"content type {message.content_type!r} is not accepted")
        payload = json.loads(body.decode(message.content_encoding or "utf-8"))
        if isinstance(payload, list) and len(payload) >= 2:
            preview = f"args={payload[0]!r} kwargs={payload[1]!r}"
        else:
            preview = repr(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        details.append(f"undecodable body ({exc.__class__.__name__}: {exc})")
        preview = repr(body[:80])
    if not task_name:
        details.append("no task name in the headers")
    elif task_name not in known_tasks:
        details.append(f"unknown task {task_name!r}")
    if headers.get("id"):
        delivery = TaskDelivery.objects.filter(task_id=str(headers["id"])).first()
        if delivery and delivery.reason:
            details.append(delivery.reason)
    if headers.get("reliability_reason"):
        details.append(str(headers["reliability_reason"]))
    return task_name, "; ".join(details), preview[:200]


def _death(message) -> dict:
    deaths = (message.headers or {}).get("x-death") or []
    return deaths[0] if deaths else {}


def _died_at(death: dict) -> datetime | None:
    value = death.get("time")
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value, dt_timezone.utc)
    return None


def _with_dead_letter_channel(fn, broker_url: str | None = None):
    from projectname.celery import app

    with app.connection_for_write(broker_url) as connection:
        connection.ensure_connection(max_retries=3)
        channel = connection.channel()
        try:
            TOPOLOGY.dead_letter_queue(getattr(settings, "TASK_QUEUE_TYPE", "classic"))(channel).declare()
            return fn(channel)
        finally:
            # Messages fetched and not acknowledged go back to the queue.
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - closing a broken channel
                pass


def dead_letters_list(*, limit: int = 100, broker_url: str | None = None) -> list[DeadLetter]:
    """The first ``limit`` dead letters, oldest first, without removing them.

    Reads the ``dead_letter`` queue with basic.get (no ack); closing the
    channel returns every message to the queue in its place.
    """
    from projectname.celery import app

    known = set(app.tasks.keys())

    def read(channel) -> list[DeadLetter]:
        letters = []
        while len(letters) < limit:
            message = channel.basic_get(queue=DEAD_LETTER_QUEUE, no_ack=False)
            if message is None:
                break
            death = _death(message)
            task_name, detail, preview = _describe(message, known)
            letters.append(DeadLetter(
                id=_dead_letter_id(message), task_name=task_name,
                queue=str(death.get("queue") or ""), reason=str(death.get("reason") or ""),
                detail=detail, count=int(death.get("count") or 1),
                died_at=_died_at(death), args=preview,
            ))
        return letters

    return _with_dead_letter_channel(read, broker_url)


def dead_letter_requeue(*, dead_letter_id: str | None = None, requeue_all: bool = False,
                        limit: int = 10_000, broker_url: str | None = None) -> list[str]:
    """Publish dead letters back to the queue they died in; returns their ids.

    Pass ``dead_letter_id`` (as listed by ``dead_letters_list``) or
    ``requeue_all=True``.  Each message is re-published persistent, with its
    headers and properties, straight to its original queue (default exchange),
    confirmed by the broker, and only then removed from the dead-letter queue.
    The delivery counter of a re-queued task starts again from zero.
    Raises ValueError when neither or both selectors are given.
    """
    if bool(dead_letter_id) == bool(requeue_all):
        raise ValueError("give exactly one of dead_letter_id or requeue_all=True")

    def requeue(channel) -> list[str]:
        requeued: list[str] = []
        seen = 0
        while seen < limit:
            message = channel.basic_get(queue=DEAD_LETTER_QUEUE, no_ack=False)
            if message is None:
                break
            seen += 1
            letter_id = _dead_letter_id(message)
            if not requeue_all and letter_id != dead_letter_id:
                continue
            queue = str(_death(message).get("queue") or "")
            if queue not in TOPOLOGY.queue_names():
                logger.warning("Dead letter %s came from unknown queue %r; left in place",
                               letter_id, queue)
                continue
            properties = dict(message.properties or {})
            properties["delivery_mode"] = 2
            headers = dict(message.headers or {})
            headers.pop("reliability_reason", None)
            properties["application_headers"] = headers
            properties.pop("headers", None)
            out = channel.prepare_message(
                message.body, priority=properties.pop("priority", None),
                content_type=properties.pop("content_type", None),
                content_encoding=properties.pop("content_encoding", None),
                headers=properties.pop("application_headers"),
                properties=properties,
            )
            channel.basic_publish(out, exchange="", routing_key=queue)
            channel.basic_ack(message.delivery_tag)
            requeued.append(letter_id)
        delivery_reset(task_ids=requeued)
        return requeued

    return _with_dead_letter_channel(requeue, broker_url)


def dead_letter_discard(*, dead_letter_id: str, broker_url: str | None = None) -> int:
    """Delete dead letters with this id for good; returns how many."""

    def discard(channel) -> int:
        removed = 0
        while True:
            message = channel.basic_get(queue=DEAD_LETTER_QUEUE, no_ack=False)
            if message is None:
                return removed
            if _dead_letter_id(message) == dead_letter_id:
                channel.basic_ack(message.delivery_tag)
                removed += 1

    return _with_dead_letter_channel(discard, broker_url)


def dead_letters_declare(*, channel) -> None:
    """Declare the dead-letter exchange and queue (idempotent).

    Workers call this on every (re)connection, before they consume, so a
    rejected message always has somewhere to go: RabbitMQ silently drops a
    message whose dead-letter exchange does not exist.
    """
    TOPOLOGY.dead_letter_queue(getattr(settings, "TASK_QUEUE_TYPE", "classic"))(channel).declare()


# -- long countdowns / ETA --------------------------------------------------------
def long_delay_seconds() -> float:
    return float(getattr(settings, "RELIABILITY_LONG_DELAY_SECONDS", 900))


def delayed_task_store(*, task_name: str, task_id: str, args: list, kwargs: dict,
                       options: dict, eta: datetime) -> DelayedTask:
    """Keep a task whose ETA is far ahead in the database until it is near."""
    return DelayedTask.objects.create(
        task_id=task_id, task_name=task_name, args=list(args or []),
        kwargs=dict(kwargs or {}), options=options, eta=eta,
    )


def delayed_tasks_dispatch(*, now: datetime | None = None) -> int:
    """Publish stored tasks whose ETA is within the long-delay threshold.

    They are published with their ETA, so a worker holds each one at most
    ``RELIABILITY_LONG_DELAY_SECONDS`` (kept below RabbitMQ's consumer_timeout).
    A row is marked in the same transaction as its publish; a crash in
    between republishes the same task id, which idempotent effects absorb.
    """
    from projectname.celery import app

    now = now or timezone.now()
    horizon = now + timedelta(seconds=long_delay_seconds())
    sent = 0
    due = DelayedTask.objects.filter(dispatched_at__isnull=True, eta__lte=horizon).order_by("eta")
    for row in due[:1000]:
        with transaction.atomic():
            claimed = DelayedTask.objects.filter(pk=row.pk, dispatched_at__isnull=True).update(
                dispatched_at=timezone.now())
            if not claimed:
                continue
            options = dict(row.options or {})
            app.send_task(row.task_name, args=row.args, kwargs=row.kwargs,
                          task_id=row.task_id, eta=row.eta, **options)
        sent += 1
    return sent


# -- liveness ---------------------------------------------------------------------
@dataclass(frozen=True)
class QueueLiveness:
    queue: str
    consumers: int
    expected: int
    messages: int
    workers: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.consumers >= self.expected


def queues_liveness(*, hosts: int = 1, broker_url: str | None = None) -> list[QueueLiveness]:
    """Consumer and message counts of every topology queue, from the broker.

    ``expected`` = worker programs consuming the queue x ``hosts`` running
    them (each Celery worker holds one consumer per queue).  A queue below
    that has a worker that stopped consuming (or is down).  Uses passive
    queue.declare, so it works without the management plugin.
    """
    from apps.core.broker_state import queue_counts
    from projectname.celery import app

    result = []
    with app.connection_for_write(broker_url) as connection:
        connection.ensure_connection(max_retries=2)
        counts = queue_counts(connection, TOPOLOGY.queue_names())
        for queue in TOPOLOGY.queues:
            workers = tuple(w.name for w in TOPOLOGY.consumers_of(queue.name))
            # None: NOT_FOUND, nobody ever declared it.
            messages, consumers = counts[queue.name] or (0, 0)
            result.append(QueueLiveness(queue.name, consumers, len(workers) * hosts,
                                        messages, workers))
    return result


# -- fault-injection harness effects ----------------------------------------------
def fault_account_open(*, run_id: str) -> None:
    FaultAccount.objects.get_or_create(run_id=run_id)


def fault_execution_record(*, run_id: str, token: str) -> None:
    """Record one execution (the harness counts executions vs effects)."""
    FaultExecution.objects.create(run_id=run_id, token=token, pid=os.getpid())


def fault_executions_count(*, run_id: str, token: str) -> int:
    return FaultExecution.objects.filter(run_id=run_id, token=token).count()


def fault_effect_apply(*, run_id: str, token: str, task_id: str = "") -> bool:
    """The harness's side effect: +1 on the run's balance, once per token."""
    return effect_apply(
        key=f"fault:{run_id}:{token}", task_id=task_id,
        apply=lambda: FaultAccount.objects.filter(run_id=run_id).update(
            balance=F("balance") + 1),
    )
