"""Test-only functions written with Django's task API (@task), run by the
workers through queueworks.tasks_backend: the backend's live tests and
bench/task_backend.py use them."""

from __future__ import annotations

import time

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport.
    from django_tasks import task


@task()
def echo(value):
    """Returns its argument (JSON in, JSON out)."""
    return value


@task()
def fails(message: str):
    raise ValueError(message)


@task(takes_context=True)
def attempt_of(context, token: str) -> dict:
    return {"token": token, "attempt": context.attempt, "id": context.task_result.id}


@task()
def ordered(token: str, log: str, ms: int = 0) -> None:
    """Sleeps ``ms``, then appends ``token`` to ``log``: start order of a backlog."""
    time.sleep(ms / 1000)
    with open(log, "a", encoding="ascii") as handle:
        handle.write(f"{token}\n")


@task()
def noop(n: int = 0) -> None:
    """The bulk lane's unit of work, as a Django task (bench/task_backend.py)."""
    return None


@task()
def limited_echo(tenant_id: str | None = None, value: str = "") -> str:
    """Returns ``value``; concurrency-limited per ``tenant_id`` (its route):
    an enqueue without the key is refused (queueworks/limits)."""
    return value


@task()
def unique_echo(tenant_id: str, value: str = ""):
    """Unique by tenant_id (its route): returns its arguments."""
    return [tenant_id, value]
