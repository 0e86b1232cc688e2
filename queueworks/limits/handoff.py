"""Handing a free concurrency slot to the oldest call waiting for it.

A call refused by a concurrency limit is *parked*: a ``LimitWaiter`` row
(state PARKED) holds what to publish (its arguments and options); its
delivered message is then acknowledged.  Nothing of it polls.  When a slot
is free (a run gave it back, or a lease ended), in the transaction that saw
it free and under the (limit, key) lock:

1. the oldest parked call of the key gets the slot: a ``ConcurrencySlot`` row
   with its task id and a fresh token (``grant``);
2. its row becomes WOKEN;
3. its message is published, with the token in a header, and confirmed by
   RabbitMQ;
4. the transaction commits.

The call's message arrives, finds the slot held for its task id with its
token, and runs (``concurrency.slot_take``).  What a crash leaves:

* before 3 (or the publish fails): nothing happened; the call is still parked
  and the slot free; the next decision on the key or the sweep
  (``limits_wake_waiters``, beat) hands it over again.
* between 3 and 4: the message is in the broker, the database still says
  parked and the slot free.  The message arrives, finds no slot with its
  token, and is decided like any call of the key: it runs if a slot is free
  and no older call waits, else it stays parked (its delivery acknowledged,
  the row kept).  A later hand-over publishes a new token; a copy with an
  older token then finds the slot held for another token and runs nothing.
* after 4: the message is durable (confirmed before the commit); the slot is
  held for it until its lease ends.  A redelivery of that message (its
  worker died) carries the same token and takes the slot over; a copy of the
  call without the token (the original, redelivered) runs nothing.

So at every moment the call is in the database (parked) or in the broker (its
message confirmed before the row said woken), and of all its messages only
the one holding the slot's token runs.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone

from django.db import transaction

from queueworks.core.json_values import json_safe
from queueworks.limits.models import ConcurrencySlot, LimitWaiter

logger = logging.getLogger(__name__)

# The hand-over token a woken call's message carries.
GRANT_HEADER = "queueworks_limit_grant"


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def waiter_message(task, request, args, kwargs, *, headers: dict) -> dict:
    """What to publish to wake a parked call: its arguments and options as
    delivered (task id, queue, priority, headers: the Task API can still
    cancel it), JSON only."""
    signature = task.signature_from_request(request, args, kwargs, headers=headers)
    options = {name: value for name, value in signature.options.items()
               if name not in ("countdown", "eta") and json_safe(value)}
    return {"args": list(args or ()), "kwargs": dict(kwargs or {}), "options": options}



def waiter_publish(task, message: dict, *, grant: str) -> None:
    """Publish a woken call's message (confirmed: raises if the broker did
    not take it)."""
    options = dict(message["options"])
    options["headers"] = {**(options.get("headers") or {}), GRANT_HEADER: grant}
    # direct: the message of an accepted call, published again as it was
    # (no new unique claim, its own fair sub-queue kept in ``queue``).
    task.signature(message["args"], message["kwargs"], options, type=task).apply_async(
        direct=True)


def waiters_wake(task, *, limit: str, key: str, free: int, holding: set[str],
                 lease_seconds: float, now: float | None = None) -> int:
    """Hand up to ``free`` slots to the oldest parked calls of (limit, key).
    Call inside ``transaction.atomic`` with the key locked.  ``holding``: the
    task ids holding a live slot.  Returns the calls woken."""
    now = time.time() if now is None else now
    woken = 0
    parked = (LimitWaiter.objects.filter(limit=limit, key=key, state=LimitWaiter.PARKED)
              .order_by("id"))
    for waiter in parked[:free + len(holding)]:
        if woken >= free:
            break
        if waiter.task_id in holding or waiter.message is None:
            # Another message of this call holds a slot (it runs), or there
            # is nothing to publish: the row only counts it as waiting.
            waiter.delete()
            continue
        grant = uuid.uuid4().hex
        ConcurrencySlot.objects.filter(limit=limit, key=key, task_id=waiter.task_id).delete()
        ConcurrencySlot.objects.create(limit=limit, key=key, task_id=waiter.task_id,
                                       grant=grant, acquired_at=_at(now),
                                       expires_at=_at(now + lease_seconds))
        LimitWaiter.objects.filter(id=waiter.id).update(state=LimitWaiter.WOKEN,
                                                        retry_at=_at(now))
        # Confirmed before the transaction commits: see the module's docstring.
        waiter_publish(task, waiter.message, grant=grant)
        woken += 1
    return woken


def waker_for(task, limits, key: str):
    """``wake(free=, holding=)`` for ``concurrency.slot_take``/``slot_release``:
    hands slots over inside a savepoint, so a publish that fails leaves the
    calls parked (the sweep or the next decision tries again) instead of
    undoing the caller's own work."""
    name = limits.concurrency_name

    def wake(*, free: int, holding: set[str]) -> None:
        try:
            with transaction.atomic():
                waiters_wake(task, limit=name, key=key, free=free, holding=holding,
                             lease_seconds=limits.lease_seconds)
        except Exception as exc:  # noqa: BLE001 - the broker or database: retried later
            logger.warning("Could not hand %s[%s]'s free slot to a waiting call (%s); "
                           "it stays parked until the next try.", name, key, exc)

    return wake


def key_wake(task, limits, key: str) -> int:
    """Hand the free slots of one key to its oldest parked calls, in a
    transaction of its own (slots freed by ended leases).  Returns the calls
    woken; a failure is logged and left to the next try."""
    from queueworks.limits.locking import limit_key_lock

    limit = limits.concurrency_name
    moment = _at(time.time())
    try:
        with transaction.atomic():
            limit_key_lock(limit=limit, key=key)
            slots = ConcurrencySlot.objects.filter(limit=limit, key=key)
            slots.filter(expires_at__lte=moment).delete()
            live = set(slots.values_list("task_id", flat=True))
            free = int(limits.concurrency.running) - len(live)
            if free <= 0:
                return 0
            return waiters_wake(task, limit=limit, key=key, free=free, holding=live,
                                lease_seconds=limits.lease_seconds)
    except Exception:  # noqa: BLE001 - the next sweep tries again
        logger.exception("Could not wake the calls waiting for %s[%s].", limit, key)
        return 0


def limits_wake_waiters() -> int:
    """The sweep (beat): hand the slots freed by ended leases to parked calls.

    A run that ends gives its slot to the next call itself; a holder killed
    without ending (and whose message is not redelivered: dead-lettered, or
    acknowledged by a hard time limit) frees its slot only when its lease
    ends, and nothing else would notice.  Returns the calls woken."""
    from queueworks.conf import celery_app
    from queueworks.limits.rules import task_limits

    app = celery_app()
    woken = 0
    pairs = (LimitWaiter.objects.filter(state=LimitWaiter.PARKED)
             .values_list("limit", "key").distinct())
    for limit, key in list(pairs):
        task_name = limit.rpartition(":")[0]
        limits = task_limits(task_name)
        task = app.tasks.get(task_name)
        if limits is None or limits.concurrency is None or task is None:
            continue
        woken += key_wake(task, limits, key)
    return woken
