"""Unique tasks: while a call with the same unique key is waiting or running, a
second enqueue returns the first's id and runs nothing.

Declared per route: ``Route(..., unique=Unique(key="tenant_id"))``; the key is
the values of the named parameters in one call.  The state is one
``UniqueClaim`` row per live key, in the project's database:

* **Enqueue** (``unique_claim_take``, called by the outbox writer
  ``queueworks.taskapi.recorded.recorded_task_accept`` in its transaction):
  insert the claim for the new task id.  The key's unique index makes
  concurrent enqueues wait for each other (PostgreSQL: the second insert
  blocks until the first commits; SQLite: one writer at a time), so exactly
  one wins; the others read the holder and return its id, writing and
  publishing nothing.  A claim past its ``expires_at`` is taken over.
* **Start** (``unique_run_admit``, the task base class before the body): the
  holder's own message renews the claim as RUNNING with the running lease
  (its redeliveries too: a redelivered message keeps its claim).  A message
  whose claim was taken over by another id while it waited (its lease ran
  out: the worker holding it died and nobody consumed it in time) runs
  nothing, so a key never runs twice.
* **End** (``unique_claim_release``, queueworks/limits/unique_hooks.py): success,
  final failure, dead-lettering (a rejection without requeue), revocation and
  the Task API's cancel remove the claim.  A retry keeps it (waiting again).
* **Death**: a worker SIGKILLed while running the task leaves the claim; the
  message is redelivered (acks late) and keeps it, and if nothing runs it the
  claim is free ``lease_seconds`` after the start: the route's hard time
  limit plus ``LEASE_MARGIN_SECONDS`` unless declared.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from queueworks.limits.declaration import Unique

logger = logging.getLogger(__name__)

# Added to the hard time limit for the running lease: a run that is still
# alive is killed by its time limit before its claim can expire.
LEASE_MARGIN_SECONDS = 30


class UniqueKeyError(ValueError):
    """A call of a unique task that lacks a parameter of its key (names ``field``)."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class UniqueKey:
    digest: str
    label: str


@dataclass(frozen=True)
class Claim:
    """The outcome of an enqueue: ``task_id`` holds the key; ``duplicate``:
    it was already held by that (earlier) task and nothing new was written."""

    task_id: str
    duplicate: bool


# -- declaration ---------------------------------------------------------------------
_declared: dict[str, Unique] | None = None


def unique_for(task_name: str) -> Unique | None:
    """The route's ``Unique`` declaration.  Asked on every task call, so the
    table is built once per process (``limits_declarations_reset`` clears it)."""
    global _declared
    if _declared is None:
        from queueworks.conf import topology

        _declared = {route.task: route.unique for route in topology().routes if route.unique}
    return _declared.get(task_name)


def limits_declarations_reset(**kwargs) -> None:
    """Forget the declarations read from the topology (a test that swaps it)."""
    global _declared
    from queueworks.limits import fair

    _declared = None
    fair._cache = None
    task_signature.cache_clear()


def running_lease_seconds(task_name: str) -> int:
    """How long a started run holds its key without ending: the declaration's
    ``lease_seconds``, else the hard time limit that applies plus a margin."""
    from queueworks.conf import topology

    declared = topology()
    route = declared.route_for(task_name)
    if route is not None and route.unique is not None and route.unique.lease_seconds:
        return int(route.unique.lease_seconds)
    limits = [route.time_limit] if route is not None and route.time_limit else []
    if not limits:
        queue = declared.queue_for(task_name)
        limits = [worker.time_limit for worker in declared.consumers_of(queue)] or [90]
    return int(max(limits)) + LEASE_MARGIN_SECONDS


@lru_cache(maxsize=256)
def task_signature(task_name: str) -> inspect.Signature | None:
    """The parameters of the function behind ``task_name`` (a Celery task or a
    Django ``@task``), None when it cannot be found in this process."""
    from queueworks.conf import celery_app
    from queueworks.tasks_backend.worker import django_task_at

    # A Django @task first: its Celery task is a (*args, **kwargs) wrapper.
    django_task = django_task_at(task_name)
    if django_task is not None:
        signature = inspect.signature(django_task.func)
        if getattr(django_task, "takes_context", False):
            parameters = list(signature.parameters.values())[1:]
            signature = signature.replace(parameters=parameters)
        return signature
    app = celery_app()
    if task_name not in app.tasks:
        from queueworks.core.checks import project_task_names

        project_task_names()  # imports every app's tasks module once
    task = app.tasks.get(task_name)
    if task is not None:
        # A bound task's run is a bound method: self is not a parameter.
        return inspect.signature(task.run)
    return None


def unique_key(*, task_name: str, unique: Unique, args, kwargs) -> UniqueKey:
    """The key of one call; ``UniqueKeyError`` names a parameter it lacks."""
    args, kwargs = list(args or ()), dict(kwargs or {})
    signature = task_signature(task_name)
    values: dict[str, object] = {}
    if signature is not None:
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise UniqueKeyError(f"{task_name}: {exc}", field="kwargs") from None
        bound.apply_defaults()
        arguments = bound.arguments
    else:
        arguments = kwargs
    for name in unique.parameters:
        if name not in arguments:
            raise UniqueKeyError(
                f"{task_name} is unique by {', '.join(unique.parameters)}: the call does not "
                f"pass {name!r}", field=name)
        values[name] = arguments[name]
    encoded = json.dumps([task_name, [[k, values[k]] for k in unique.parameters]],
                         sort_keys=True, default=str)
    label = ", ".join(f"{name}={values[name]!r}" for name in unique.parameters)
    return UniqueKey(digest=hashlib.sha256(encoded.encode()).hexdigest(), label=label[:500])


# -- enqueue ---------------------------------------------------------------------------
def unique_claim_take(*, task_name: str, key: UniqueKey, task_id: str, unique: Unique,
                      now: datetime | None = None) -> Claim:
    """Claim ``key`` for ``task_id`` in the caller's transaction, or name its holder.

    Must run inside the transaction that writes the task's outbox record, so
    the claim and the record commit (or roll back) together."""
    from queueworks.limits.models import UniqueClaim

    now = now or timezone.now()
    expires = now + timedelta(seconds=unique.waiting_seconds)
    for _ in range(5):
        try:
            with transaction.atomic():
                UniqueClaim.objects.create(key=key.digest, task_name=task_name, label=key.label,
                                           task_id=task_id, state=UniqueClaim.WAITING,
                                           claimed_at=now, expires_at=expires)
            return Claim(task_id=task_id, duplicate=False)
        except IntegrityError:
            pass
        holder = UniqueClaim.objects.filter(key=key.digest).values_list(
            "task_id", "expires_at").first()
        if holder is None:
            continue  # released in between: try the insert again
        holder_id, expires_at = holder
        if expires_at > now:
            _tally(task_name, duplicates=1)
            return Claim(task_id=holder_id, duplicate=True)
        # The holder's lease ran out: take the key over, unless someone else
        # did first (the update matches the old holder only).
        taken = UniqueClaim.objects.filter(key=key.digest, task_id=holder_id).update(
            task_id=task_id, state=UniqueClaim.WAITING, claimed_at=now, expires_at=expires,
            label=key.label)
        if taken:
            _tally(task_name, taken_over=1)
            logger.warning("Unique %s(%s): the claim of %s expired; %s takes it over.",
                           task_name, key.label, holder_id, task_id)
            return Claim(task_id=task_id, duplicate=False)
    raise RuntimeError(f"Unique {task_name}({key.label}): the claim kept changing; try again.")


def _tally(task_name: str, **increments: int) -> None:
    from queueworks.limits.models import UniqueTally

    updates = {name: F(name) + value for name, value in increments.items()}
    if not UniqueTally.objects.filter(task_name=task_name).update(**updates):
        try:
            with transaction.atomic():
                UniqueTally.objects.create(task_name=task_name, **increments)
        except IntegrityError:
            UniqueTally.objects.filter(task_name=task_name).update(**updates)


# -- start -------------------------------------------------------------------------------
def unique_run_admit(*, task_name: str, task_id: str, args, kwargs,
                     now: datetime | None = None) -> bool:
    """Before a run of a unique task: True if it may run (its claim renewed as
    RUNNING), False if another task holds its key (this message runs nothing)."""
    from queueworks.limits.models import UniqueClaim

    unique = unique_for(task_name)
    if unique is None:
        return True
    now = now or timezone.now()
    running_until = now + timedelta(seconds=running_lease_seconds(task_name))
    if UniqueClaim.objects.filter(task_id=task_id).update(
            state=UniqueClaim.RUNNING, expires_at=running_until):
        return True
    # No claim for this id: released or expired and taken over while the
    # message waited, or the task was published without one (an old message).
    try:
        key = unique_key(task_name=task_name, unique=unique, args=args, kwargs=kwargs)
    except UniqueKeyError:
        logger.exception("Unique %s[%s]: no key in the call; it runs unguarded.",
                         task_name, task_id)
        return True
    with transaction.atomic():
        claim = unique_claim_take(task_name=task_name, key=key, task_id=task_id, unique=unique,
                                  now=now)
        if claim.duplicate:
            _tally(task_name, superseded=1)
            logger.warning("Unique %s(%s): %s holds the key; message %s runs nothing.",
                           task_name, key.label, claim.task_id, task_id)
            return False
        UniqueClaim.objects.filter(task_id=task_id).update(
            state=UniqueClaim.RUNNING, expires_at=running_until)
    return True


# -- end -----------------------------------------------------------------------------------
def unique_claim_release(*, task_id: str) -> int:
    """The task ended: its key is free.  Returns the claims removed (0 or 1)."""
    from queueworks.limits.models import UniqueClaim

    deleted, _ = UniqueClaim.objects.filter(task_id=task_id).delete()
    return deleted


def unique_claim_wait_again(*, task_id: str, task_name: str, now: datetime | None = None) -> None:
    """A retry: the task waits again, with the waiting lease."""
    from queueworks.limits.models import UniqueClaim

    unique = unique_for(task_name)
    if unique is None:
        return
    now = now or timezone.now()
    UniqueClaim.objects.filter(task_id=task_id).update(
        state=UniqueClaim.WAITING, expires_at=now + timedelta(seconds=unique.waiting_seconds))
