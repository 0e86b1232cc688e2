"""Rate and concurrency limits at the start of a run, in the worker process.

``ReliableTask.__call__`` (queueworks/reliability/base.py) calls
``limits_enter`` before the task body, on every pool (prefork and the bulk
lane's solo/lean path alike), and ``limits_exit`` after it, whatever the
outcome.  A task without a declared limit costs one dictionary lookup.

A call over its limit does not wait in its process; the run ends as
``LimitDeferred`` (a Celery ``Ignore``): the delivered message is
acknowledged, nothing is stored as a failure or retry, the delivery limit
does not count it, and the process takes the next message at once.  With
``task_track_started`` the result goes back to PENDING.  Where the call
waits:

* over a **rate** limit, in the broker: its message is published again, same
  task id and arguments, with a delay until its turn (confirmed by RabbitMQ,
  ``confirm_publish``, before the original is acknowledged);
* over a **concurrency** limit, in the database: it is parked, and the run
  that frees a slot hands it over and publishes the call's message
  (queueworks/limits/handoff.py).  No timer, no polling, oldest first.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import NamedTuple

from celery.exceptions import Ignore, Reject
from django.db import connection, transaction
from django.db.models import F

from queueworks.limits.concurrency import PARKED, RUN, slot_release, slot_take
from queueworks.limits.handoff import GRANT_HEADER, waiter_message, waker_for
from queueworks.limits.models import LimitTally, LimitWaiter
from queueworks.limits.rate import rate_start_take
from queueworks.limits.rules import TaskLimits, key_value, task_limits

logger = logging.getLogger(__name__)

# The time (seconds since the epoch) a call was first refused, carried by the
# messages it is published again as.
SINCE_HEADER = "queueworks_limit_since"
DEFERRED = "deferred"


class LimitDeferred(Ignore):
    """The call is over a limit: published again, delayed, or parked."""


class Decision(NamedTuple):
    wait: float  # > 0: deferred by a rate limit for this long
    held: list[tuple[str, str]]  # the slots to give back when the run ends
    outcome: str  # RUN, DEFERRED, PARKED or STALE (concurrency.py)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def _tally(*, limit: str, key: str, started: int = 0, refused: int = 0,
           waited: float = 0.0) -> None:
    rows = LimitTally.objects.filter(limit=limit, key=key)
    if not rows.update(started=F("started") + started, refused=F("refused") + refused,
                       waited_seconds=F("waited_seconds") + waited):
        # First call of this (limit, key): the row is created under the
        # (limit, key) lock, so no other process creates it at the same time.
        LimitTally.objects.create(limit=limit, key=key, started=started, refused=refused,
                                  waited_seconds=waited)


def limits_decide(*, limits: TaskLimits, task_id: str, rate_key: str | None,
                  concurrency_key: str | None, since: float | None,
                  now: float | None = None, grant: str = "", message=None,
                  wake=None, task=None) -> Decision:
    """Take what the call needs, or say how it waits.  The bookkeeping
    (waiting calls, tallies) is written in the same transaction.  On
    PostgreSQL a rate limit alone, or a concurrency limit alone (given the
    ``task``, to hand slots over), is decided by one database function
    (rate_sql.py, concurrency_sql.py)."""
    if (limits.concurrency is None and rate_key is not None
            and connection.vendor == "postgresql"):
        from queueworks.limits.rate_sql import rate_decide_sql

        wait = rate_decide_sql(limit=limits.rate_name, key=rate_key, rule=limits.rate,
                               task_id=task_id, since=since, now=now)
        return Decision(wait, [], DEFERRED if wait else RUN)
    if (limits.rate is None and concurrency_key is not None and task is not None
            and connection.vendor == "postgresql"):
        from queueworks.limits.concurrency_sql import slot_take_sql

        outcome = slot_take_sql(task, limits, key=concurrency_key, task_id=task_id,
                                grant=grant, since=since, now=now,
                                message=message() if message is not None else None)
        held = [(limits.concurrency_name, concurrency_key)] if outcome == RUN else []
        return Decision(0.0, held, outcome)
    held: list[tuple[str, str]] = []
    with transaction.atomic():
        if limits.concurrency is not None and concurrency_key is not None:
            name = limits.concurrency_name
            outcome = slot_take(limit=name, key=concurrency_key, task_id=task_id,
                                rule=limits.concurrency, lease_seconds=limits.lease_seconds,
                                grant=grant, since=since, message=message, wake=wake, now=now)
            if outcome != RUN:
                if outcome == PARKED:
                    _tally(limit=name, key=concurrency_key, refused=1)
                return Decision(0.0, [], outcome)
            held.append((name, concurrency_key))
        wait = 0.0
        if limits.rate is not None and rate_key is not None:
            wait = rate_start_take(limit=limits.rate_name, key=rate_key, rule=limits.rate,
                                   now=now)
            if wait and held:
                # The slot goes on to the next waiting call.
                slot_release(limit=held[0][0], key=held[0][1], task_id=task_id,
                             rule=limits.concurrency, wake=wake, now=now)
                held = []
        now = time.time() if now is None else now
        if wait:
            _tally(limit=limits.rate_name, key=rate_key, refused=1)
            LimitWaiter.objects.update_or_create(
                limit=limits.rate_name, key=rate_key, task_id=task_id,
                defaults={"since": _at(since or now), "retry_at": _at(now + wait),
                          "state": LimitWaiter.DEFERRED})
            return Decision(wait, [], DEFERRED)
        waited = max(0.0, now - since) if since is not None else 0.0
        for limit, key in held:
            _tally(limit=limit, key=key, started=1, waited=waited)
        if limits.rate is not None and rate_key is not None:
            _tally(limit=limits.rate_name, key=rate_key, started=1, waited=waited)
        if since is not None and limits.rate is not None and rate_key is not None:
            LimitWaiter.objects.filter(limit=limits.rate_name, key=rate_key,
                                       task_id=task_id).delete()
    return Decision(0.0, held, RUN)


def _call_headers(request, since: float) -> dict:
    # The call's own headers (the Task API's record marker among them), not
    # RabbitMQ's dead-lettering history (its cycle detection would drop it)
    # nor a hand-over token (a new one comes with each hand-over).
    headers = {name: value for name, value in (request.headers or {}).items()
               if not (name.startswith("x-") and "death" in name) and name != GRANT_HEADER}
    headers[SINCE_HEADER] = since
    return headers


def limits_enter(task, request, args, kwargs) -> list[tuple[str, str]] | None:
    """Before the task body: take the call's slots and start, or defer it.

    Returns the slots to give back in ``limits_exit`` (None: no limit)."""
    limits = task_limits(task.name)
    if limits is None:
        return None
    since = request.get(SINCE_HEADER)
    since = float(since) if since is not None else None
    rate_key = key_value(task, limits.rate.key, args, kwargs) if limits.rate else None
    concurrency_key = (key_value(task, limits.concurrency.key, args, kwargs)
                       if limits.concurrency else None)
    first_refused = since or time.time()
    decision = limits_decide(
        limits=limits, task_id=request.id, rate_key=rate_key,
        concurrency_key=concurrency_key, since=since, grant=request.get(GRANT_HEADER) or "",
        message=lambda: waiter_message(task, request, args, kwargs,
                                       headers=_call_headers(request, first_refused)),
        wake=waker_for(task, limits, concurrency_key) if concurrency_key is not None else None,
        task=task)
    if decision.outcome == RUN:
        return decision.held
    if decision.outcome == DEFERRED:
        _publish_again(task, request, args, kwargs, wait=decision.wait, since=first_refused)
        _back_to_pending(task, request)
        raise LimitDeferred(f"over its limit; published again to start in "
                            f"{decision.wait:.3f} s")
    if decision.outcome == PARKED:
        _back_to_pending(task, request)
        raise LimitDeferred("over its concurrency limit; waits for a slot to be handed to it")
    raise LimitDeferred("another message of this call holds its slot; this one runs nothing")


def limits_exit(task, request, held: list[tuple[str, str]] | None) -> None:
    """After the run, whatever its outcome: give the slots back, each to the
    oldest call waiting for it."""
    if not held:
        return
    limits = task_limits(task.name)
    for limit, key in held:
        try:
            if (limits is not None and limits.concurrency is not None
                    and connection.vendor == "postgresql"):
                from queueworks.limits.concurrency_sql import slot_release_sql

                slot_release_sql(task, limits, key=key, task_id=request.id)
                continue
            with transaction.atomic():
                slot_release(limit=limit, key=key, task_id=request.id,
                             rule=limits.concurrency if limits else None,
                             wake=waker_for(task, limits, key) if limits else None)
        except Exception:  # noqa: BLE001 - the lease frees it; never mask the task's outcome
            logger.exception("Could not release %s[%s] held by %s; it frees when its "
                             "lease ends.", limit, key, request.id)


def _publish_again(task, request, args, kwargs, *, wait: float, since: float) -> None:
    signature = task.signature_from_request(request, args, kwargs, countdown=wait,
                                            headers=_call_headers(request, since))
    try:
        signature.apply_async()
    except Exception as exc:  # noqa: BLE001 - the broker did not take it
        # Back to the queue: the original is the only copy.
        logger.warning("Could not publish %s[%s] again (%s); requeued.", task.name,
                       request.id, exc)
        raise Reject(f"could not defer: {exc}", requeue=True) from exc


def _back_to_pending(task, request) -> None:
    if getattr(task, "track_started", False) and not task.ignore_result:
        # STARTED was stored before the body ran; the call is queued again.
        task.backend.store_result(request.id, None, "PENDING", request=request)
