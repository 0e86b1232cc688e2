"""Writes of the task tallies (``queueworks/metrics/models.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from queueworks.metrics.models import TaskMinute, TaskTotal

# Minute rows older than this are deleted by the daily cleanup.
MINUTE_RETENTION = timedelta(days=2)

Deltas = dict[tuple[str, datetime, str], float]


def task_tallies_add(*, deltas: Deltas) -> None:
    """Add each (task name, minute, key) -> amount to its minute row and to its total.

    One transaction; rows in a fixed order, so two processes flushing at once
    wait for each other instead of deadlocking.  ``value = value + amount``
    is atomic in the database: concurrent writers never lose an increment.
    """
    totals: dict[tuple[str, str], float] = {}
    for (task_name, _minute, key), amount in deltas.items():
        totals[(task_name, key)] = totals.get((task_name, key), 0.0) + amount
    with transaction.atomic():
        for (task_name, key), amount in sorted(totals.items()):
            _add(TaskTotal, {"task_name": task_name, "key": key}, amount)
        for (task_name, minute, key), amount in sorted(deltas.items()):
            _add(TaskMinute, {"task_name": task_name, "minute": minute, "key": key}, amount)


def _add(model, lookup: dict, amount: float) -> None:
    if model.objects.filter(**lookup).update(value=F("value") + amount):
        return
    try:
        with transaction.atomic():  # a savepoint: a lost insert race keeps the outer transaction
            model.objects.create(value=amount, **lookup)
    except IntegrityError:
        model.objects.filter(**lookup).update(value=F("value") + amount)


def task_minutes_prune(*, now: datetime | None = None) -> int:
    """Delete minute rows past ``MINUTE_RETENTION``; totals are kept."""
    cutoff = (now or timezone.now()) - MINUTE_RETENTION
    deleted, _ = TaskMinute.objects.filter(minute__lt=cutoff).delete()
    return deleted
