"""The outbox writer behind every recorded start: the Task API's, the Django
task backend's and ``delay()`` of a unique task (queueworks/limits/unique_enqueue.py).

``recorded_task_accept`` writes an already validated call (its ``TaskRecord``
and PENDING result, queueworks/taskapi/outbox.py) in the caller's transaction,
with a unique task's claim, and publishes it on commit (``_publish_start``),
to the call's fair-sharing sub-queue when its route shares its queue fairly.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from amqp.exceptions import AMQPError
from django.db import transaction
from django.utils import timezone

from queueworks.conf import celery_app
from queueworks.dispatch.process_publisher import publisher_supported
from queueworks.dispatch.services import task_enqueue
from queueworks.limits.fair import fair_queue_for
from queueworks.limits.unique import Claim as UniqueClaimOutcome
from queueworks.limits.unique import UniqueKeyError, unique_claim_take, unique_for, unique_key
from queueworks.reliability.delayed import delayed_task_store, long_delay_seconds
from queueworks.taskapi.broker import BROKER_ERRORS, broker_connection, retry_policy
from queueworks.taskapi.errors import BrokerUnavailable, TaskValidationError
from queueworks.taskapi.models import RECORDED_HEADER, TaskRecord
from queueworks.taskapi.outbox import (
    outbox_mark_confirmed,
    outbox_records_discard,
    outbox_records_write,
)

app = celery_app()

logger = logging.getLogger(__name__)


def _publish_start(
    *, task_id: str, task_name: str, args: list, kwargs: dict, queue: str,
    priority: int | None, run_at: datetime | None,
) -> None:
    """Publish an accepted task; its rows are already committed (the outbox).

    If nothing could be sent the rows are removed again and the caller hears
    ``BrokerUnavailable``; the confirm marks the record, else the outbox
    sweeper publishes it again (queueworks/taskapi/outbox.py).
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
                         priority=priority, task_id=task_id, headers=options["headers"])
        else:
            with broker_connection() as conn:
                # confirm_publish: send_task returns once the broker confirmed.
                app.send_task(
                    task_name, args=args, kwargs=kwargs, task_id=task_id, connection=conn,
                    retry=True, retry_policy=retry_policy(), **options,
                )
            outbox_mark_confirmed(task_ids=[task_id])
    except (BrokerUnavailable, AMQPError, *BROKER_ERRORS) as exc:
        # The publisher raises only for a message it never wrote (py-amqp's
        # channel and connection errors included): nothing was sent.
        outbox_records_discard(task_ids=[task_id])
        if isinstance(exc, BrokerUnavailable):
            raise
        raise BrokerUnavailable(
            f"The message broker refused or dropped the message: {exc.__class__.__name__}: {exc}. "
            "Nothing was sent."
        ) from exc
    logger.info("Task API accepted %s[%s] on queue %s", task_name, task_id, queue)


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
) -> UniqueClaimOutcome:
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
    ``TaskValidationError`` naming the parameter.
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
                return claim
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
            return UniqueClaimOutcome(task_id=task_id, duplicate=False)
    transaction.on_commit(lambda: _publish_start(
        task_id=task_id, task_name=task_name, args=args, kwargs=kwargs, queue=queue,
        priority=priority, run_at=run_at,
    ))
    return UniqueClaimOutcome(task_id=task_id, duplicate=False)
