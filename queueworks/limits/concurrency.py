"""Concurrency limits: at most ``running`` calls per key run at once, across
every process on every host.

A running call holds a slot: a ``ConcurrencySlot`` row that is a lease.  It
is deleted when the run ends, whatever the outcome (``slot_release``).  A
holder that dies without ending (SIGKILL, OOM, a lost host) leaves its row;
the row stops counting at ``expires_at``, so the slot is free again at most
``lease_seconds`` after it was taken.  RabbitMQ redelivers such a holder's
message (acks late), and that delivery of the same task id takes over its
own row instead of waiting for it to expire: the task never runs twice at
once, and it does not wait for itself.

A call that finds no free slot waits in the database, not in the broker:
it is *parked* (a ``LimitWaiter`` row holding what to publish), its message
is acknowledged, and nothing of it polls.  The run that gives a slot back
hands it to the oldest parked call of the key in the same transaction
(queueworks/limits/handoff.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

from django.db.models import Q

from queueworks.limits.declaration import ConcurrencyLimit
from queueworks.limits.locking import limit_key_lock
from queueworks.limits.models import ConcurrencySlot, LimitWaiter

# The lease when the declaration names none: the hard time limit of the
# route (else of its workers) plus this margin (``rules.lease_for``).
LEASE_MARGIN_SECONDS = 30

RUN, PARKED, STALE = "run", "parked", "stale"


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def slot_take(*, limit: str, key: str, task_id: str, rule: ConcurrencyLimit,
              lease_seconds: float, grant: str = "", since: float | None = None,
              message: Callable[[], dict] | None = None, wake=None,
              now: float | None = None) -> str:
    """Take a slot of ``rule`` for ``key``, or park the call.  Call inside
    ``transaction.atomic``.

    ``grant``: the hand-over token the delivered message carries ("" for
    none).  ``message()``: what to publish when the call is woken.
    ``wake(free=, holding=)``: hands free slots to the oldest parked calls
    (handoff.waiters_wake bound to the task); used when a slot is free but
    older calls wait (a lease ended).

    Returns ``RUN`` (the call holds its slot), ``PARKED`` (it waits in the
    database; its delivered message may be acknowledged) or ``STALE`` (a
    copy of a call another message stands for: run nothing)."""
    limit_key_lock(limit=limit, key=key)
    now = time.time() if now is None else now
    moment = _at(now)
    slots = ConcurrencySlot.objects.filter(limit=limit, key=key)
    rows = list(slots.values_list("task_id", "grant", "expires_at"))
    mine = next((row for row in rows if row[0] == task_id), None)
    waiters = LimitWaiter.objects.filter(limit=limit, key=key)
    if mine is not None:
        if mine[1] != grant:
            return STALE  # the slot was handed to another message of this call
        # Its own slot: handed to it, or a redelivery of the holder (killed).
        slots.filter(task_id=task_id).update(acquired_at=moment,
                                             expires_at=_at(now + lease_seconds))
        if grant:
            waiters.filter(task_id=task_id).delete()
        return RUN
    queue = list(waiters.filter(Q(task_id=task_id) | Q(state=LimitWaiter.PARKED))
                 .order_by("id").values_list("id", "task_id")[:2])
    ahead = bool(queue) and queue[0][1] != task_id
    waiting = any(row[1] == task_id for row in queue)
    if grant and not waiting and not waiters.filter(task_id=task_id).exists():
        return STALE  # a late copy of a call that has started already
    live = [row for row in rows if row[2] > moment]
    if len(live) < len(rows):
        slots.filter(expires_at__lte=moment).delete()
    if len(live) < int(rule.running) and not ahead:
        ConcurrencySlot.objects.create(limit=limit, key=key, task_id=task_id,
                                       acquired_at=moment,
                                       expires_at=_at(now + lease_seconds))
        if waiting:
            waiters.filter(task_id=task_id).delete()
        return RUN
    body = message() if message is not None else None
    if not waiters.filter(task_id=task_id).update(
            state=LimitWaiter.PARKED, message=body, retry_at=moment):
        LimitWaiter.objects.create(limit=limit, key=key, task_id=task_id, since=_at(since or now),
                                   retry_at=moment, state=LimitWaiter.PARKED, message=body)
    if len(live) < int(rule.running) and wake is not None:
        # Free slots with older calls waiting (a lease ended): theirs first.
        wake(free=int(rule.running) - len(live), holding={row[0] for row in live})
    return PARKED


def slot_release(*, limit: str, key: str, task_id: str, rule: ConcurrencyLimit | None = None,
                 wake=None, now: float | None = None) -> None:
    """Give ``task_id``'s slot back and hand the free slots to the oldest
    parked calls.  Call inside ``transaction.atomic``."""
    limit_key_lock(limit=limit, key=key)
    slots = ConcurrencySlot.objects.filter(limit=limit, key=key)
    slots.filter(task_id=task_id).delete()
    if rule is None or wake is None:
        return
    if not LimitWaiter.objects.filter(limit=limit, key=key, state=LimitWaiter.PARKED).exists():
        return
    moment = _at(time.time() if now is None else now)
    slots.filter(expires_at__lte=moment).delete()
    live = set(slots.values_list("task_id", flat=True))
    if len(live) < int(rule.running):
        wake(free=int(rule.running) - len(live), holding=live)


def slots_running(*, limit: str, key: str, now: float) -> int:
    return ConcurrencySlot.objects.filter(limit=limit, key=key,
                                          expires_at__gt=_at(now)).count()
