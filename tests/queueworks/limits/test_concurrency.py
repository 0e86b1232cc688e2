"""Concurrency slots are leases in the database."""

from __future__ import annotations

import pytest
from django.db import transaction

from queueworks.limits.concurrency import slot_release, slot_take, slots_running
from queueworks.limits.declaration import ConcurrencyLimit

pytestmark = pytest.mark.django_db
RULE = ConcurrencyLimit(running=2, key="tenant_id")


def take(task_id, now, *, key="k", lease=10.0):
    with transaction.atomic():
        return slot_take(limit="t:concurrency", key=key, task_id=task_id, rule=RULE,
                         lease_seconds=lease, now=now)


def test_at_most_running_slots_per_key():
    assert take("a", 100.0) == 0.0
    assert take("b", 100.0) == 0.0
    assert take("c", 100.0) > 0
    assert take("c", 100.0, key="other") == 0.0
    assert slots_running(limit="t:concurrency", key="k", now=100.0) == 2


def test_a_released_slot_is_free_at_once():
    take("a", 100.0)
    take("b", 100.0)
    slot_release(limit="t:concurrency", key="k", task_id="a")
    assert take("c", 100.0) == 0.0


def test_a_dead_holders_slot_frees_when_its_lease_ends():
    take("a", 100.0, lease=5.0)
    take("b", 100.0, lease=5.0)
    wait = take("c", 101.0)
    assert 0 < wait <= 4.0 + 1e-6  # never later than the first lease's end
    assert take("c", 104.99) > 0        # the leases have not ended yet
    assert take("c", 105.0) == 0.0      # at its end the slot no longer counts
    assert slots_running(limit="t:concurrency", key="k", now=105.01) <= 2


def test_a_redelivery_takes_over_its_own_slot():
    take("a", 100.0)
    take("b", 100.0)
    # The holder "a" was killed; its message comes back with the same task id.
    assert take("a", 101.0) == 0.0
    assert slots_running(limit="t:concurrency", key="k", now=101.0) == 2
