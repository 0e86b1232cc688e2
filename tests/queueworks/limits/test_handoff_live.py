"""Concurrency waiters on the live system: parked in the database, handed a
slot in turn, each refused once (nothing polls); a slot whose holder died
without ending reaches the parked call through beat's sweep.

``limited_concurrency``: one run at a time per tenant on main_worker (prefork,
two processes), 8 s lease (projectname/topology.py, TEST_SUPPORT_ROUTES).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from apps.testing.tasks import limited_concurrency
from queueworks.core.builtin import LIMITS_WAKE_SECONDS
from queueworks.limits.models import ConcurrencySlot, LimitTally, LimitWaiter
from tests.queueworks.limits.test_limits_live import events, overlapping, starts_of
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
LIMIT = "apps.testing.tasks.limited_concurrency:concurrency"


def test_parked_calls_start_oldest_first_each_refused_once(live_system, tmp_path):
    log = tmp_path / "fifo.log"
    tenant = f"f-{uuid.uuid4().hex[:8]}"
    holder = limited_concurrency.delay(tenant, ms=2500, log=str(log))
    wait_for(lambda: starts_of(log, tenant), 30, interval=0.1, message="the holder started")
    waiting = [limited_concurrency.delay(tenant, ms=100, log=str(log)) for _ in range(4)]
    parked = wait_for(lambda: (lambda ids: ids if len(ids) == 4 else None)(
        list(LimitWaiter.objects.filter(limit=LIMIT, key=tenant, state=LimitWaiter.PARKED)
             .order_by("id").values_list("task_id", flat=True))), 20, interval=0.1,
        message="four calls parked")
    assert sorted(parked) == sorted(r.id for r in waiting)

    def all_ended():
        found = events(log)
        ended = [t for t in [holder.id, *parked] if any(e[0] == "end" for e in found.get(t, ()))]
        return found if len(ended) == 5 else None

    found = wait_for(all_ended, 40, interval=0.2, message="five runs ended")
    runs = {task_id: (next(e[3] for e in found[task_id] if e[0] == "start"),
                      next(e[3] for e in found[task_id] if e[0] == "end"))
            for task_id in [holder.id, *parked]}
    assert overlapping(list(runs.values())) == 1
    # In the order they were parked, each soon after the previous one ended
    # (handed over by it: no timer).
    order = sorted(parked, key=lambda task_id: runs[task_id][0])
    assert order == parked
    previous_end = runs[holder.id][1]
    for task_id in parked:
        assert runs[task_id][0] - previous_end < 1.5, (task_id, runs[task_id][0] - previous_end)
        previous_end = runs[task_id][1]
    # Each waiting call was refused once, never again (nothing polls).
    assert sum(len([e for e in found[t] if e[0] == "start"]) for t in runs) == 5
    assert LimitTally.objects.get(limit=LIMIT, key=tenant).refused == 4
    assert not LimitWaiter.objects.filter(key=tenant).exists()
    wait_for(lambda: not ConcurrencySlot.objects.filter(key=tenant).exists(), 10,
             message="the last slot given back")


def test_a_slot_whose_holder_died_reaches_the_parked_call_through_the_sweep(live_system,
                                                                           tmp_path):
    """The holder left its slot and no message will end it (killed, and its
    message dead-lettered or acknowledged by a hard time limit): the call
    parked behind it starts once the lease ends, within beat's sweep."""
    log = tmp_path / "sweep.log"
    tenant = f"s-{uuid.uuid4().hex[:8]}"
    lease_end = time.time() + 2.0
    now = datetime.now(timezone.utc)
    ConcurrencySlot.objects.create(limit=LIMIT, key=tenant, task_id="dead-holder",
                                   acquired_at=now, expires_at=now + timedelta(seconds=2))
    call = limited_concurrency.delay(tenant, ms=50, log=str(log))
    wait_for(lambda: LimitWaiter.objects.filter(task_id=call.id, state=LimitWaiter.PARKED)
             .exists(), 20, interval=0.1, message="the call parked")
    [start] = wait_for(lambda: starts_of(log, tenant), LIMITS_WAKE_SECONDS + 30, interval=0.2,
                       message="the parked call started")
    # The bound: the lease's end plus one sweep period (and the time to run
    # the sweep and deliver the message on a loaded machine).
    assert start - lease_end < LIMITS_WAKE_SECONDS + 10, start - lease_end
    wait_for(lambda: len([e for e in events(log).get(call.id, ()) if e[0] == "end"]) == 1, 10,
             message="the call ended")
    assert len(starts_of(log, tenant)) == 1
    assert not ConcurrencySlot.objects.filter(key=tenant).exists()
