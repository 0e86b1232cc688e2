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
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone

from queueworks.limits.declaration import ConcurrencyLimit
from queueworks.limits.locking import limit_key_locked
from queueworks.limits.models import ConcurrencySlot

# A refused call tries again after about this long (with jitter, so refused
# calls do not all come back together), or when the earliest lease ends.
RETRY_SECONDS = 1.0
# The lease when the declaration names none and the route has no time limit
# of its own: the worker's hard time limit is added by ``lease_for``.
LEASE_MARGIN_SECONDS = 30


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def slot_take(*, limit: str, key: str, task_id: str, rule: ConcurrencyLimit,
              lease_seconds: float, now: float | None = None) -> float:
    """Take a slot of ``rule`` for ``key``; 0.0 when taken, else the seconds
    until the call should try again.  Call inside ``transaction.atomic``."""
    limit_key_locked(limit=limit, key=key)
    now = time.time() if now is None else now
    slots = ConcurrencySlot.objects.filter(limit=limit, key=key)
    moment, expires = _at(now), _at(now + lease_seconds)
    if slots.filter(task_id=task_id).update(acquired_at=moment, expires_at=expires):
        return 0.0  # a redelivery of the holder: its own (possibly stale) slot
    live = slots.filter(expires_at__gt=moment)
    if live.count() < int(rule.running):
        slots.filter(expires_at__lte=moment).delete()
        ConcurrencySlot.objects.create(limit=limit, key=key, task_id=task_id,
                                       acquired_at=moment, expires_at=expires)
        return 0.0
    first_expiry = live.order_by("expires_at").values_list("expires_at", flat=True).first()
    retry = RETRY_SECONDS * random.uniform(0.5, 1.5)
    if first_expiry is not None:
        retry = min(retry, max(0.05, first_expiry.timestamp() - now))
    return retry


def slot_release(*, limit: str, key: str, task_id: str) -> None:
    ConcurrencySlot.objects.filter(limit=limit, key=key, task_id=task_id).delete()


def slots_running(*, limit: str, key: str, now: float) -> int:
    return ConcurrencySlot.objects.filter(limit=limit, key=key,
                                          expires_at__gt=_at(now)).count()
