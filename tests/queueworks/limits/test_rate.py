"""The rate limit's bucket (GCRA on the (limit, key) row)."""

from __future__ import annotations

import heapq
import random

import pytest
from django.db import transaction

from queueworks.limits.declaration import RateLimit
from queueworks.limits.rate import rate_start_take

pytestmark = pytest.mark.django_db


def take(rule, now, *, waited=False, key="k", limit="t:rate"):
    with transaction.atomic():
        return rate_start_take(limit=limit, key=key, rule=rule, now=now, waited=waited)


def test_starts_are_spaced_one_interval_apart():
    rule = RateLimit(starts=2, per_seconds=1.0)
    assert take(rule, 100.0) == 0.0
    assert take(rule, 100.1) == pytest.approx(0.4)  # the next start is at 100.5
    assert take(rule, 100.5, waited=True) == 0.0


def test_burst_lets_that_many_extra_start_at_once():
    rule = RateLimit(starts=2, per_seconds=1.0, burst=2)
    assert [take(rule, 100.0) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]


def test_keys_have_buckets_of_their_own():
    rule = RateLimit(starts=1, per_seconds=1.0)
    assert take(rule, 100.0, key="a") == 0.0
    assert take(rule, 100.0, key="b") == 0.0
    assert take(rule, 100.0, key="a") > 0


def test_refused_calls_are_given_retry_times_one_interval_apart():
    rule = RateLimit(starts=10, per_seconds=1.0)
    assert take(rule, 100.0) == 0.0
    waits = [take(rule, 100.0) for _ in range(5)]
    assert waits == [pytest.approx(w) for w in (0.1, 0.2, 0.3, 0.4, 0.5)]


def test_a_new_call_queues_behind_waiting_ones():
    rule = RateLimit(starts=10, per_seconds=1.0)
    take(rule, 100.0)
    assert take(rule, 100.0) == pytest.approx(0.1)      # waiter promised 100.1
    # At 100.1 the next start is free, but the waiter comes for it.
    assert take(rule, 100.1) == pytest.approx(0.1)      # new call: behind, at 100.2
    assert take(rule, 100.1, waited=True) == 0.0        # the waiter starts


@pytest.mark.parametrize("starts,burst", [(5, 0), (5, 2), (20, 3)])
def test_no_window_of_the_period_holds_more_than_starts_plus_burst(starts, burst):
    rule = RateLimit(starts=starts, per_seconds=1.0, burst=burst)
    rng = random.Random(starts * 100 + burst)
    # Three times more calls than the limit for 10 s; a refused call comes
    # back exactly when it was told to.
    events, now = [], 1000.0
    while now < 1010.0:
        now += rng.expovariate(starts * 3)
        events.append((now, False))
    heapq.heapify(events)
    started = []
    while events:
        now, waited = heapq.heappop(events)
        if now >= 1010.0:
            break
        wait = take(rule, now, waited=waited)
        if wait:
            heapq.heappush(events, (now + wait, True))
        else:
            started.append(now)
    # Every half-open window of one second, anchored at each start (less a
    # microsecond: the bucket's float arithmetic may land a start 1e-12 s early).
    most = max(sum(1 for t in started if s <= t < s + 1.0 - 1e-6) for s in started)
    assert most <= starts + burst
    # And the limit is used: over the 10 s, the declared rate (+ the burst).
    assert starts * 10 <= len(started) <= starts * 10 + burst + 1
