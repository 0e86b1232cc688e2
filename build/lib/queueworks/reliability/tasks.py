"""Reliability tasks: the delayed-dispatch beat job."""

from __future__ import annotations

from celery import shared_task

from queueworks.reliability.delayed import delayed_tasks_dispatch


@shared_task
def dispatch_delayed_tasks() -> int:
    """Publish stored long-countdown tasks whose time is near (beat, every minute)."""
    return delayed_tasks_dispatch()
