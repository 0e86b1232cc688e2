"""Rate and concurrency limits at the start of a run, in the worker process.

``ReliableTask.__call__`` (queueworks/reliability/base.py) calls
``limits_enter`` before the task body, on every pool (prefork and the bulk
lane's solo/lean path alike), and ``limits_exit`` after it, whatever the
outcome.  A task without a declared limit costs one dictionary lookup.

A call over its limit does not wait in its process.  Its message is published
again, same task id and arguments, with a delay until it may start (the
publish is confirmed by RabbitMQ, ``confirm_publish``, before the original
message is acknowledged, so nothing is lost); then ``LimitDeferred`` (a
Celery ``Ignore``) ends the run: the original is acknowledged, nothing is
stored as a failure or retry, and the delivery limit does not count it (the
new message is a first delivery).  The process takes the next message at once.
With ``task_track_started`` the result goes back to PENDING.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from celery.exceptions import Ignore, Reject
from django.db import transaction
from django.db.models import F

from queueworks.limits.concurrency import slot_release, slot_take
from queueworks.limits.models import LimitTally, LimitWaiter
from queueworks.limits.rate import rate_start_take
from queueworks.limits.rules import TaskLimits, key_value, task_limits

logger = logging.getLogger(__name__)

# The time (seconds since the epoch) a call was first refused, carried by the
# messages it is published again as.
SINCE_HEADER = "queueworks_limit_since"


class LimitDeferred(Ignore):
    """The call is over a limit; its message was published again, delayed."""


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
                  now: float | None = None) -> tuple[float, list[tuple[str, str]]]:
    """Take what the call needs: (0.0, slots held) when it may start, else
    (seconds to wait, []).  One transaction; the bookkeeping (waiting calls,
    tallies) is written in it."""
    held: list[tuple[str, str]] = []
    taken: list[tuple[str, str]] = []
    wait = 0.0
    with transaction.atomic():
        # The slot first: giving it back is free, a rate start is not.
        if limits.concurrency is not None and concurrency_key is not None:
            name = limits.concurrency_name
            wait = slot_take(limit=name, key=concurrency_key, task_id=task_id,
                             rule=limits.concurrency, lease_seconds=limits.lease_seconds,
                             now=now)
            (held if not wait else []).append((name, concurrency_key))
            taken.append((name, concurrency_key))
        if not wait and limits.rate is not None and rate_key is not None:
            name = limits.rate_name
            wait = rate_start_take(limit=name, key=rate_key, rule=limits.rate, now=now,
                                   waited=since is not None)
            taken.append((name, rate_key))
            if wait:
                for slot_limit, slot_key in held:
                    slot_release(limit=slot_limit, key=slot_key, task_id=task_id)
                held = []
        now = time.time() if now is None else now
        refused_by = taken[-1] if wait else None
        for limit, key in taken:
            if (limit, key) == refused_by:
                _tally(limit=limit, key=key, refused=1)
                LimitWaiter.objects.update_or_create(
                    limit=limit, key=key, task_id=task_id,
                    defaults={"since": _at(since or now), "retry_at": _at(now + wait)})
            elif not wait:
                waited = now - since if since is not None else 0.0
                _tally(limit=limit, key=key, started=1, waited=max(0.0, waited))
                if since is not None:
                    LimitWaiter.objects.filter(task_id=task_id).delete()
    return wait, held


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
    wait, held = limits_decide(limits=limits, task_id=request.id, rate_key=rate_key,
                               concurrency_key=concurrency_key, since=since)
    if not wait:
        return held
    _publish_again(task, request, args, kwargs, wait=wait, since=since or time.time())
    raise LimitDeferred(f"over its limit; published again to start in {wait:.3f} s")


def limits_exit(task, request, held: list[tuple[str, str]] | None) -> None:
    for limit, key in held or ():
        try:
            slot_release(limit=limit, key=key, task_id=request.id)
        except Exception:  # noqa: BLE001 - the lease frees it; never mask the task's outcome
            logger.exception("Could not release %s[%s] held by %s; it frees when its "
                             "lease ends.", limit, key, request.id)


def _publish_again(task, request, args, kwargs, *, wait: float, since: float) -> None:
    # The call's own headers (the Task API's record marker among them), not
    # RabbitMQ's dead-lettering history (its cycle detection would drop it).
    headers = {name: value for name, value in (request.headers or {}).items()
               if not (name.startswith("x-") and "death" in name)}
    headers[SINCE_HEADER] = since
    signature = task.signature_from_request(request, args, kwargs, countdown=wait,
                                            headers=headers)
    try:
        signature.apply_async()
    except Exception as exc:  # noqa: BLE001 - the broker did not take it
        # Back to the queue: the original is the only copy.
        logger.warning("Could not publish %s[%s] again (%s); requeued.", task.name,
                       request.id, exc)
        raise Reject(f"could not defer: {exc}", requeue=True) from exc
    if getattr(task, "track_started", False) and not task.ignore_result:
        # STARTED was stored before the body ran; the call is queued again.
        task.backend.store_result(request.id, None, "PENDING", request=request)
