"""The limits' beat job: wake calls parked behind slots whose lease ended."""

from __future__ import annotations

from celery import shared_task

from queueworks.limits.handoff import limits_wake_waiters


@shared_task(ignore_result=True)
def wake_limit_waiters() -> int:
    """Hand slots freed by ended leases to parked calls (beat, every
    ``LIMITS_WAKE_SECONDS``; queueworks/limits/handoff.py)."""
    return limits_wake_waiters()
