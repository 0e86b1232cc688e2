"""The topology the balancer's live tests run: two balanced test programs.

The production topology declares no balance; these programs, their queues
(named ``test.*``, which the test vhost's permissions allow) and the balance
exist only for the tests, rendered into a supervisord of their own
(tests/support/programs.py).
"""

from __future__ import annotations

from dataclasses import replace

from queueworks.core.topology import Balance, Queue, Worker
from projectname.topology import TOPOLOGY

QUEUE_A, QUEUE_B = "test.balance_a", "test.balance_b"
BALANCED = ("balance_a", "balance_b")
BUDGET, MINIMUM, MAXIMUM, MAX_SHIFT, COOLDOWN = 4, 1, 3, 1, 3.0


def balanced_worker(name: str, queue: str, concurrency: int) -> Worker:
    return Worker(name=name, queues=(queue,), concurrency=concurrency, prefetch_multiplier=1,
                  task_events=False, task_events_lease=30, soft_time_limit=30, time_limit=60,
                  max_memory_per_child=None)


BALANCED_TOPOLOGY = replace(
    TOPOLOGY.with_added(
        queues=(Queue(QUEUE_A, "balancer live test, lane A", dead_letter=False),
                Queue(QUEUE_B, "balancer live test, lane B", dead_letter=False)),
        workers=(balanced_worker("balance_a", QUEUE_A, 2), balanced_worker("balance_b", QUEUE_B, 2)),
    ),
    balance=Balance(workers=BALANCED, budget=BUDGET, min_processes=MINIMUM,
                    max_processes=MAXIMUM, max_shift=MAX_SHIFT, cooldown_seconds=COOLDOWN,
                    interval_seconds=1.0, runtime_window=20),
)
TOPOLOGY_PATH = "tests.queueworks.balancer.topology:BALANCED_TOPOLOGY"
SETTINGS = "tests.queueworks.balancer.settings"
