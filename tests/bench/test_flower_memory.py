"""Flower keeps at most --max-tasks tasks, in memory and in the state it saves
and loads back after a restart (bench/flower_memory.py at a small size; the
100,000-task table is in docs/operations.md)."""

import pytest

from bench.flower_memory import measure
from tests.support import rabbit

pytestmark = pytest.mark.live


def test_flower_keeps_at_most_max_tasks_across_a_restart(broker_vhost):
    row = measure(rabbit.broker_url(broker_vhost), tasks=600, max_tasks=200, timeout=180,
                  count_tasks=True)
    assert row["tasks_kept"] == 200, row
    assert row["tasks_kept_after_restart"] == 200, row
