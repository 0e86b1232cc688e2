"""One task from a request: published now, confirmed in the background."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from amqp import Message
from django.db import transaction

from queueworks.dispatch.compat import amqp as compat_amqp
from queueworks.dispatch.messages import (
    _celery_app,
    _message_properties,
    _queue_name,
    _resolve_task,
    _slimming,
    _task_body,
    _task_headers,
)

_timing = threading.local()


def _publish_and_wait(app, message: Message, queue_name: str) -> None:
    """py-amqp's stock publish on a ``confirm_publish`` connection: returns once
    the broker confirmed (the pooled publisher needs the tested py-amqp)."""
    with app.connection_for_write(transport_options={"confirm_publish": True}) as connection:
        channel = connection.default_channel
        queue = app.amqp.queues.get(queue_name)
        if queue is not None:
            queue(channel).declare()
        channel.basic_publish(message, exchange="", routing_key=queue_name)


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
    keep_for: float | None = None,
) -> str:
    """Publish one call of ``task`` through this process's pooled publisher.

    The message is the one ``apply_async`` would send (``app.amqp.as_task_v2``:
    persistent, on the topology's durable queue unless ``queue`` is given);
    the broker's confirm is collected in the background and an unconfirmed
    message is re-sent (queueworks/dispatch/publisher.py), so the call costs one
    socket write instead of a round trip to the broker's disk.
    ``wait_confirm`` (seconds) waits for the confirm as well.  ``keep_for``
    (seconds): when the broker cannot be reached now, the publisher keeps the
    message and sends it once it can, for that long, and ``PublishDeferred``
    is raised (queueworks/dispatch/keeping.py).  Returns the id.
    """
    from queueworks.dispatch.process_publisher import process_publisher

    started, started_cpu = time.perf_counter(), time.thread_time()
    app = _celery_app()
    task = _resolve_task(task)
    task_id = task_id or str(uuid.uuid4())
    queue_name = _queue_name(app, task, queue)
    kwargs = dict(kwargs or {})
    slim = _slimming()
    message_headers = _task_headers(app, task, task_id, args=tuple(args), kwargs=kwargs,
                                    extra=headers, slim=slim)
    message = Message(_task_body(tuple(args), kwargs, slim=slim),
                      application_headers=message_headers, correlation_id=task_id,
                      **_message_properties(app, priority))
    if compat_amqp.SUPPORTED:
        process_publisher().publish(message, routing_key=queue_name, wait_confirm=wait_confirm,
                                    keep_for=keep_for)
    else:
        _publish_and_wait(app, message, queue_name)
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

