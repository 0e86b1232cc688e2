"""Idempotent effects: a side effect applied at most once per key, however
many times its task is delivered (a killed worker, a lost ack, a broker
restart)."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from queueworks.reliability.models import Effect


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
