"""The outbox writer behind every recorded start: the Task API's, the Django
task backend's and ``delay()`` of a unique task (queueworks/limits/unique_enqueue.py).

``recorded_task_accept`` writes an already validated call (its ``TaskRecord``
and PENDING result, queueworks/taskapi/outbox.py) in the caller's transaction,
with a unique task's claim, and publishes it on commit (``_publish_start``),
to the call's fair-sharing sub-queue when its route shares its queue fairly.

Once the rows are committed the task is accepted, whatever the broker does
next: a publish the broker does not take in time (unreachable, a lost
connection, no answer within ``TASKAPI_BROKER_TIMEOUT``) leaves the record in
the outbox and the outcome says ``published=False``.  The process's
publisher keeps the message and sends it as soon as the broker answers, for
half of ``TASKAPI_OUTBOX_REPUBLISH_AFTER_SECONDS`` (queueworks/dispatch/keeping.py);
after that bound the outbox sweeper publishes the record, so one of them
holds it at a time.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from amqp.exceptions import AMQPError
from django.db import DatabaseError, transaction
from django.utils import timezone

from queueworks.conf import celery_app
from queueworks.conf import settings as queueworks_settings
from queueworks.dispatch.keeping import PublishDeferred
from queueworks.dispatch.process_publisher import publisher_supported
from queueworks.dispatch.services import task_enqueue
from queueworks.limits.fair import fair_queue_for
from queueworks.limits.unique import UniqueKeyError, unique_claim_take, unique_for, unique_key
from queueworks.reliability.delayed import delayed_task_store, long_delay_seconds
from queueworks.taskapi.broker import BROKER_ERRORS, broker_connection, retry_policy
from queueworks.taskapi.errors import BrokerUnavailable, TaskValidationError
from queueworks.taskapi.models import RECORDED_HEADER, TaskRecord
from queueworks.taskapi.outbox import (
    outbox_deferred_count,
    outbox_mark_confirmed,
    outbox_records_write,
)

app = celery_app()

logger = logging.getLogger(__name__)


@dataclass
class Acceptance:
    """What became of a recorded call."""

    #: The accepted task's id; for a unique task's ``duplicate`` the holder's.
    task_id: str
    #: A unique task's key was held: nothing was written or published.
    duplicate: bool = False
    #: True: the broker took the message (or the delayed store holds it);
    #: False: it did not in time, the outbox relays the record; None: the
    #: caller's transaction has not committed yet (published on commit).
    published: bool | None = None


def publisher_keep_seconds() -> float:
    """How long this process's publisher keeps a message the broker did not
    take: half the sweeper's bound, so the sweeper never takes a record the
    publisher may still send."""
    return queueworks_settings.TASKAPI_OUTBOX_REPUBLISH_AFTER_SECONDS / 2


def _publish_start(
    *, task_id: str, task_name: str, args: list, kwargs: dict, queue: str,
    priority: int | None, run_at: datetime | None,
) -> bool:
    """Publish an accepted task; its rows are already committed (the outbox).

    True when the broker took the message; False when it did not in time:
    the record stays in the outbox and is relayed (``outbox_publish_deferred``).
    """
    # Fair sharing: the call's sub-queue (queueworks/limits/fair.py).
    queue = fair_queue_for(task_name, queue, args, kwargs)
    options: dict[str, Any] = {"queue": queue, "headers": {RECORDED_HEADER: True}}
    if priority is not None:
        options["priority"] = priority
    if run_at is not None:
        options["eta"] = run_at
    try:
        if run_at is None and publisher_supported():
            # The common case: this process's pooled publisher, confirm in
            # the background (queueworks/dispatch/process_publisher.py marks the record).
            task_enqueue(task=task_name, args=args, kwargs=kwargs, queue=queue,
                         priority=priority, task_id=task_id, headers=options["headers"],
                         keep_for=publisher_keep_seconds())
        else:
            with broker_connection() as conn:
                # confirm_publish: send_task returns once the broker confirmed.
                app.send_task(
                    task_name, args=args, kwargs=kwargs, task_id=task_id, connection=conn,
                    retry=True, retry_policy=retry_policy(), **options,
                )
            outbox_mark_confirmed(task_ids=[task_id])
    except PublishDeferred as exc:
        outbox_publish_deferred(task_ids=[task_id], task_name=task_name, error=exc.__cause__
                                or exc, relay="this process's publisher once the broker "
                                "answers, else the outbox sweeper")
        return False
    except (BrokerUnavailable, AMQPError, *BROKER_ERRORS) as exc:
        # Committed is accepted: the sweeper publishes the record (a publish
        # that failed here may still have reached the broker: at least once).
        outbox_publish_deferred(task_ids=[task_id], task_name=task_name, error=exc,
                                relay="the outbox sweeper")
        return False
    logger.info("Task API accepted %s[%s] on queue %s", task_name, task_id, queue)
    return True


def outbox_publish_deferred(*, task_ids: list[str], task_name: str, error: BaseException,
                            relay: str) -> None:
    """Accepted tasks whose message the broker did not take: a log line per
    call and the ``..._taskapi_outbox_deferred_total`` counter (docs/metrics.md)."""
    logger.warning(
        "Task API accepted %d %s (%s) but the broker did not take the message (%s: %s); "
        "the record stays in the outbox and is published by %s.", len(task_ids), task_name,
        ", ".join(task_ids[:10]) + (" ..." if len(task_ids) > 10 else ""),
        error.__class__.__name__, error, relay)
    try:
        outbox_deferred_count(task_name=task_name, amount=len(task_ids))
    except DatabaseError:  # the count only: the records are committed already
        logger.exception("Could not count %d deferred publishes of %s", len(task_ids),
                         task_name)


def recorded_task_enqueue(
    *, task_name: str, args: list, kwargs: dict, queue: str, priority: int | None,
    run_at: datetime | None, user=None, rerun_of: TaskRecord | None = None,
    task_id: str | None = None,
) -> str:
    """``recorded_task_accept``'s task id (the holder's, for a unique task's duplicate)."""
    return recorded_task_accept(
        task_name=task_name, args=args, kwargs=kwargs, queue=queue, priority=priority,
        run_at=run_at, user=user, rerun_of=rerun_of, task_id=task_id).task_id


def recorded_task_accept(
    *, task_name: str, args: list, kwargs: dict, queue: str, priority: int | None,
    run_at: datetime | None, user=None, rerun_of: TaskRecord | None = None,
    task_id: str | None = None,
) -> Acceptance:
    """Write an already validated call to the outbox and publish it on commit.

    The rows (``TaskRecord`` and a PENDING result) are written in the
    caller's transaction: once that commits the task is durable, whether or
    not the broker answers (the outbox sweep publishes it again).  A
    ``run_at`` beyond the long-delay threshold waits in the database
    (queueworks/reliability/delayed.py) instead of in a worker, so RabbitMQ's
    consumer_timeout never closes a channel over it.

    A task the topology declares unique (queueworks/limits/unique.py) claims
    its key in the same transaction; when a live task holds the key already,
    nothing is written or published and the outcome names that task
    (``duplicate``).  A call without the key's parameters raises
    ``TaskValidationError`` naming the parameter.  A call the broker does not
    take in time is accepted all the same (``published=False``): its claim
    stays with its record, as for any accepted call, until the task ends.
    """
    task_id = task_id or str(uuid.uuid4())
    unique = unique_for(task_name)
    key = None
    if unique is not None:
        try:
            key = unique_key(task_name=task_name, unique=unique, args=args, kwargs=kwargs)
        except UniqueKeyError as exc:
            raise TaskValidationError({exc.field: [str(exc)]}) from None
    with transaction.atomic():
        if key is not None:
            claim = unique_claim_take(task_name=task_name, key=key, task_id=task_id,
                                      unique=unique)
            if claim.duplicate:
                return Acceptance(task_id=claim.task_id, duplicate=True)
        outbox_records_write(task_name=task_name, calls=[(task_id, args, kwargs)], queue=queue,
                             priority=priority, eta=run_at, user=user, rerun_of=rerun_of)
        if run_at is not None and (run_at - timezone.now()).total_seconds() > long_delay_seconds():
            options: dict[str, Any] = {"queue": queue, "headers": {RECORDED_HEADER: True}}
            if priority is not None:
                options["priority"] = priority
            delayed_task_store(task_name=task_name, task_id=task_id, args=args, kwargs=kwargs,
                               options=options, eta=run_at)
            # The stored row holds it now; the delayed dispatch publishes it
            # with confirms when it is near, so the sweep must not.
            outbox_mark_confirmed(task_ids=[task_id])
            return Acceptance(task_id=task_id, published=True)
    accepted = Acceptance(task_id=task_id)

    def publish() -> None:
        accepted.published = _publish_start(
            task_id=task_id, task_name=task_name, args=args, kwargs=kwargs, queue=queue,
            priority=priority, run_at=run_at)

    # Runs now in autocommit mode, else when the caller's transaction commits.
    transaction.on_commit(publish)
    return accepted
