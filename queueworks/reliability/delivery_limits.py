"""The delivery limit: a message that keeps starting and never finishing
(its worker process dies each time) is counted, and past the limit rejected
to the dead-letter exchange instead of run again.  A start that finished
resets the count (``delivery_finished``).  Also the rejection raised
when transient retries run out."""

from __future__ import annotations

import logging

from celery.exceptions import Reject
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from queueworks.reliability.models import TaskDelivery
from queueworks.core.topology import DELIVERY_LIMIT
from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger(__name__)


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
               or queueworks_settings.RELIABILITY_DELIVERY_LIMIT)


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


def delivery_finished(*, task_id: str) -> None:
    """A counted (redelivered) start ran to its end, whatever its outcome:
    the count starts again.  With acks late a finished task is delivered
    again when its acknowledgement was lost (the broker connection closed in
    between); those runs finished, and must not add up to the limit."""
    TaskDelivery.objects.filter(task_id=task_id, dead_lettered_at__isnull=True).delete()


def delivery_reset(*, task_ids: list[str]) -> None:
    """Forget delivery counts (an operator re-queued the messages)."""
    TaskDelivery.objects.filter(task_id__in=task_ids).delete()
