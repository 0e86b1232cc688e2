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
* the call returns only when the broker confirmed every message; otherwise
  it raises :class:`BulkEnqueueError` naming the task ids that were refused
  (nack), not confirmed in time or cut off by a broken connection, and
  whether any of them may have reached the broker (``written``), so what it
  says is always true.

The Task API's bulk start (queueworks/taskapi/bulk.py) writes the tasks'
records first, in the caller's transaction: they are the outbox
(queueworks/taskapi/outbox.py), so an accepted batch is published in full even
when the connection breaks halfway.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from amqp.exceptions import AMQPError, ChannelError
from django.db import transaction
from kombu.common import maybe_declare
from kombu.exceptions import OperationalError

from queueworks.dispatch.confirms import BulkEnqueueError, _publish_confirmed
from queueworks.dispatch.frames import SHORTSTR_MAX
from queueworks.dispatch.messages import _celery_app, _MessageBuilder, _queue_name, _resolve_task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BulkEnqueueResult:
    task_ids: list[str]
    queue: str
    seconds: float
    #: Accepted (recorded) but not confirmed by the broker yet: the outbox
    #: sweeper publishes them (the HTTP API's bulk start only).
    pending_ids: list[str] = field(default_factory=list)


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
    from queueworks.limits.fair import fair_queue_for, fair_routes

    if task.name in fair_routes():
        # Fair sharing: one batch per sub-queue (queueworks/limits/fair.py).
        groups: dict[str, list[int]] = {}
        for index, kwargs in enumerate(kwargs_list):
            groups.setdefault(fair_queue_for(task.name, queue, (), kwargs), []).append(index)
        if list(groups) != [queue]:
            started = time.perf_counter()
            for sub_queue, indexes in groups.items():
                tasks_enqueue_bulk(task=task, kwargs_list=[kwargs_list[i] for i in indexes],
                                   priority=priority, confirm_timeout=confirm_timeout,
                                   task_ids=[task_ids[i] for i in indexes], headers=headers,
                                   queue=sub_queue)
            return BulkEnqueueResult(task_ids=task_ids, queue=_queue_name(app, task, queue),
                                     seconds=time.perf_counter() - started)
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
    for attempt in (1, 2):
        messages = (build.message(task_id, item) for task_id, item in zip(task_ids, prepared))
        try:
            _publish_on_pooled_connection(app, messages, count=count, queue_name=queue_name,
                                          task_ids=task_ids, confirm_timeout=confirm_timeout)
            break
        except BulkEnqueueError as exc:
            # A pooled connection that died while idle fails before anything
            # is written: one fresh try, as nothing can be duplicated.
            if exc.written or attempt == 2 or isinstance(exc.__cause__, ChannelError):
                raise
    return BulkEnqueueResult(
        task_ids=task_ids, queue=queue_name, seconds=time.perf_counter() - started,
    )


def _publish_on_pooled_connection(app, messages, *, count: int, queue_name: str,
                                  task_ids: list[str], confirm_timeout: float) -> None:
    with app.pool.acquire(block=True) as connection:
        try:
            try:
                connection.ensure_connection(max_retries=3)
                # Declared once per connection (cached), with the topology's arguments.
                maybe_declare(app.amqp.queues[queue_name], connection.default_channel)
            except (AMQPError, OperationalError, OSError) as exc:
                raise BulkEnqueueError(
                    f"the broker refused or dropped the connection before anything was "
                    f"sent ({exc.__class__.__name__}: {exc}); nothing was sent",
                    task_ids=task_ids, written=0) from exc
            _publish_confirmed(
                connection.connection, messages, count=count, routing_key=queue_name,
                task_ids=task_ids, confirm_timeout=confirm_timeout,
            )
        except BulkEnqueueError as exc:
            if isinstance(exc.__cause__, (AMQPError, OperationalError, OSError)):
                # A broken connection goes back to the pool without its transport.
                connection.collect()
            raise


def tasks_enqueue_bulk_on_commit(
    *, task, kwargs_list: Sequence[Mapping[str, object]], priority: int | None = None,
) -> list[str]:
    """Like :func:`tasks_enqueue_bulk`, after the current transaction commits.

    Returns the task ids now; the messages are published on commit (never, on
    rollback), as ``delay_on_commit`` does for one task.
    """
    task_ids = [str(uuid.uuid4()) for _ in kwargs_list]
    kwargs_list = [dict(kwargs) for kwargs in kwargs_list]
    transaction.on_commit(lambda: tasks_enqueue_bulk(
        task=task, kwargs_list=kwargs_list, priority=priority, task_ids=task_ids,
    ))
    return task_ids
