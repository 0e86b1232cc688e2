"""Dead letters: what sits in the dead-letter queue, putting it back on its
original queue, discarding it, and declaring the queue (used by
``manage.py dead_letters``, the ops dashboard and every worker)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from datetime import timezone as dt_timezone

import amqp
from django.conf import settings
from django.utils import timezone

from queueworks.reliability.delivery_limits import delivery_reset
from queueworks.reliability.models import TaskDelivery
from queueworks.conf import TOPOLOGY
from queueworks.core.topology import DEAD_LETTER_QUEUE
from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger(__name__)


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
    from queueworks.conf import celery_app
    app = celery_app()

    with app.connection_for_write(broker_url) as connection:
        connection.ensure_connection(max_retries=3)
        channel = connection.channel()
        try:
            dead_letters_declare(channel=channel)
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
    from queueworks.conf import celery_app
    app = celery_app()

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
                        limit: int = 10_000, broker_url: str | None = None,
                        may_requeue: Callable[[str], bool] | None = None) -> list[str]:
    """Publish dead letters back to the queue they died in; returns their ids.

    Pass ``dead_letter_id`` (as listed by ``dead_letters_list``) or
    ``requeue_all=True``.  Each message is re-published persistent, with its
    headers and properties, straight to its original queue (default exchange),
    confirmed by the broker, and only then removed from the dead-letter queue.
    The delivery counter of a re-queued task starts again from zero.
    ``may_requeue(task_name)`` is asked for each message about to be
    re-queued (several may share an id): a message it refuses stays where it is.
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
            # A fair sub-queue's dead letter goes back to that sub-queue.
            if queue not in TOPOLOGY.declared_queue_names():
                logger.warning("Dead letter %s came from unknown queue %r; left in place",
                               letter_id, queue)
                continue
            # The message in hand is the one checked: a check on another
            # message with the same id would say nothing about this one.
            if may_requeue is not None and not may_requeue(str((message.headers or {}).get("task") or "")):
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
    queue = TOPOLOGY.dead_letter_queue(queueworks_settings.TASK_QUEUE_TYPE)
    if not isinstance(channel, amqp.Channel):  # kombu's virtual transports: no arguments to differ
        queue(channel).declare()
        return
    # A channel of its own: a refusal closes that channel only, not the caller's.
    own = channel.connection.channel()
    try:
        queue(own).declare()
    except amqp.exceptions.PreconditionFailed as exc:
        # Declared by an earlier version with other arguments (a quorum queue
        # without DEAD_LETTER_DELIVERY_LIMIT): it exists, bound, and takes dead
        # letters as before.  Refusing to start would stop every worker until
        # the queue is migrated; doctor ("4.x: dead-letter queue limit") and
        # migrate_queues name and fix it.
        logger.warning("The dead-letter queue %s exists with other arguments than declared "
                       "(%s): it is used as it is; run `manage.py migrate_queues` to redeclare it.",
                       DEAD_LETTER_QUEUE, exc)
    finally:
        if own.is_open:
            own.close()
