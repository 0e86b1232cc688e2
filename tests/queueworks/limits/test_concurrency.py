"""Concurrency slots are leases in the database; a call without a slot is
parked there, and a slot given back is handed to the oldest parked call."""

from __future__ import annotations

import pytest
from django.db import transaction

from queueworks.limits.concurrency import PARKED, RUN, STALE, slot_release, slot_take, slots_running
from queueworks.limits.declaration import ConcurrencyLimit
from queueworks.limits.models import ConcurrencySlot, LimitWaiter

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
RULE = ConcurrencyLimit(running=2, key="tenant_id")
LIMIT = "t:concurrency"  # TaskLimits(task="t").concurrency_name


class Waker:
    """Stands for handoff.waiters_wake: grants slots like it, records the
    wake-ups instead of publishing."""

    def __init__(self, key="k", now=100.0):
        self.key, self.now, self.woken = key, now, []

    def __call__(self, *, free, holding):
        from queueworks.limits import handoff

        published = []
        original = handoff.waiter_publish
        handoff.waiter_publish = lambda task, message, grant: published.append(
            (message["kwargs"]["n"], grant))
        try:
            handoff.waiters_wake(None, limit=LIMIT, key=self.key, free=free, holding=holding,
                                 lease_seconds=10.0, now=self.now)
        finally:
            handoff.waiter_publish = original
        self.woken.extend(published)


def take(task_id, now, *, key="k", lease=10.0, grant="", wake=None):
    with transaction.atomic():
        return slot_take(limit=LIMIT, key=key, task_id=task_id, rule=RULE,
                         lease_seconds=lease, now=now, grant=grant, wake=wake,
                         message=lambda: {"args": [], "kwargs": {"n": task_id}, "options": {}})


def release(task_id, *, key="k", wake=None, now=100.0):
    with transaction.atomic():
        slot_release(limit=LIMIT, key=key, task_id=task_id, rule=RULE, wake=wake, now=now)


def test_at_most_running_slots_per_key():
    assert take("a", 100.0) == RUN
    assert take("b", 100.0) == RUN
    assert take("c", 100.0) == PARKED
    assert take("c", 100.0, key="other") == RUN
    assert slots_running(limit=LIMIT, key="k", now=100.0) == 2
    assert LimitWaiter.objects.get(key="k").state == LimitWaiter.PARKED


def test_a_released_slot_goes_to_the_oldest_parked_call_first_in_first_out():
    take("a", 100.0)
    take("b", 100.0)
    for name in ("c", "d", "e"):
        assert take(name, 100.0) == PARKED
    waker = Waker()
    release("a", wake=waker)
    release("b", wake=waker)
    assert [name for name, _ in waker.woken] == ["c", "d"]
    grants = dict(waker.woken)
    # A new call does not jump the queue: "e" waits, and so does "f" behind it.
    assert take("f", 100.0, wake=waker) == PARKED
    # The woken call's message arrives with its token and runs on its slot.
    assert take("c", 100.1, grant=grants["c"]) == RUN
    assert not LimitWaiter.objects.filter(task_id="c").exists()
    release("c", wake=waker)
    assert [name for name, _ in waker.woken] == ["c", "d", "e"]
    assert list(LimitWaiter.objects.filter(state=LimitWaiter.PARKED)
                .values_list("task_id", flat=True)) == ["f"]


def test_only_the_message_with_the_slots_token_runs():
    take("a", 100.0)
    take("b", 100.0)
    take("c", 100.0)
    waker = Waker()
    release("a", wake=waker)
    [(_, grant)] = waker.woken
    # The original message of "c", redelivered (its ack was lost), runs nothing.
    assert take("c", 100.1) == STALE
    # A copy with another token (a hand-over whose commit never happened) neither.
    assert take("c", 100.1, grant="0" * 32) == STALE
    assert take("c", 100.2, grant=grant) == RUN
    # Its redelivery (the worker died mid-run) takes its own slot over.
    assert take("c", 100.3, grant=grant) == RUN
    release("c")
    # A late copy of a call that has run: nothing to run.
    assert take("c", 100.4, grant=grant) == STALE
    assert slots_running(limit=LIMIT, key="k", now=100.5) == 1


def test_a_hand_over_that_never_committed_leaves_the_call_parked_and_its_copy_decides():
    """A crash between the publish and the commit: the database still says
    parked; the copy that arrives is decided like the call itself."""
    take("a", 100.0)
    take("b", 100.0)
    take("c", 100.0)
    assert take("c", 100.1, grant="f" * 32) == PARKED  # no slot free yet: still parked
    assert LimitWaiter.objects.get(task_id="c").state == LimitWaiter.PARKED
    release("a")  # without a waker: a slot is free, "c" still parked
    assert take("c", 100.2, grant="f" * 32) == RUN     # free and first in line: runs
    assert not LimitWaiter.objects.exists()


def test_a_dead_holders_slot_frees_when_its_lease_ends_and_goes_to_the_oldest_call():
    take("a", 100.0, lease=5.0)
    take("b", 100.0, lease=5.0)
    assert take("c", 101.0) == PARKED
    assert take("d", 104.99) == PARKED  # the leases have not ended yet
    waker = Waker(now=105.0)
    # At their end the next decision on the key hands both slots on, oldest first.
    assert take("e", 105.0, wake=waker) == PARKED
    assert [name for name, _ in waker.woken] == ["c", "d"]
    assert slots_running(limit=LIMIT, key="k", now=105.01) == 2


def test_a_redelivery_takes_over_its_own_slot():
    take("a", 100.0)
    take("b", 100.0)
    # The holder "a" was killed; its message comes back with the same task id.
    assert take("a", 101.0) == RUN
    assert slots_running(limit=LIMIT, key="k", now=101.0) == 2


def test_a_call_that_holds_a_slot_is_not_handed_a_second_one():
    """Two messages of one call (a publish repeated by the outbox): one runs,
    the other's parked row is dropped at hand-over instead of a second slot."""
    take("a", 100.0)
    take("b", 100.0)
    assert take("c", 100.0) == PARKED
    ConcurrencySlot.objects.filter(task_id="b").update(task_id="c")  # "c" runs meanwhile
    waker = Waker()
    release("a", wake=waker)
    assert waker.woken == []
    assert not LimitWaiter.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_database_functions_on_postgresql_take_the_same_decisions(monkeypatch):
    """concurrency_sql's functions through the scenarios above: oldest first,
    only the token's message runs, a late copy runs nothing, tallies kept."""
    from django.db import connection

    from queueworks.limits import concurrency_sql
    from queueworks.limits.models import LimitTally
    from queueworks.limits.rules import TaskLimits

    if connection.vendor != "postgresql":
        pytest.skip("the database functions are PostgreSQL's (the PostgreSQL pass runs them)")
    woken = []
    monkeypatch.setattr(concurrency_sql, "waiter_publish",
                        lambda task, message, grant: woken.append((message["kwargs"]["n"], grant)))
    limits = TaskLimits(task="t", rate=None, concurrency=RULE, lease_seconds=10.0)

    def take_sql(task_id, *, grant="", since=None):
        return concurrency_sql.slot_take_sql(
            None, limits, key="k", task_id=task_id, grant=grant, since=since,
            message={"args": [], "kwargs": {"n": task_id}, "options": {}})

    def release_sql(task_id):
        return concurrency_sql.slot_release_sql(None, limits, key="k", task_id=task_id)

    assert [take_sql(n) for n in "abcde"] == [RUN, RUN, PARKED, PARKED, PARKED]
    assert take_sql("c") == PARKED  # its redelivery: still parked, keeps its place
    assert release_sql("a") == 1 and release_sql("b") == 1
    assert [n for n, _ in woken] == ["c", "d"]
    grants = dict(woken)
    assert take_sql("f") == PARKED                      # behind "e"
    assert take_sql("c") == STALE                       # the original, redelivered
    assert take_sql("c", grant="0" * 32) == STALE       # a copy with another token
    assert take_sql("c", grant=grants["c"], since=1.0) == RUN
    assert take_sql("c", grant=grants["c"]) == RUN      # its redelivery takes it over
    assert release_sql("c") == 1 and [n for n, _ in woken][-1] == "e"
    assert take_sql("c", grant=grants["c"]) == STALE    # a late copy of a call that ran
    assert list(LimitWaiter.objects.filter(state=LimitWaiter.PARKED)
                .values_list("task_id", flat=True)) == ["f"]
    tally = LimitTally.objects.get(limit=LIMIT, key="k")
    assert (tally.started, tally.refused) == (4, 5)
    assert tally.waited_seconds > 1.0
