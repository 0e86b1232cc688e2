"""Long countdowns / ETAs: a task due far ahead waits in the database, not in
a worker's memory (RabbitMQ's consumer_timeout would cancel the consumer
holding it), and is published when its ETA is near."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from queueworks.reliability.models import DelayedTask
from queueworks.conf import settings as queueworks_settings


def long_delay_seconds() -> float:
    return float(queueworks_settings.RELIABILITY_LONG_DELAY_SECONDS)


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
    from queueworks.conf import celery_app
    app = celery_app()

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
