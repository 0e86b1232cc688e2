"""The topology of the balancer's live test of a program of processes: a
balanced program of single-process workers (the bulk lane's SoloPool, one
process each) beside a balanced prefork program.

Like tests/queueworks/balancer/topology.py: test queues (``test.*``) and
programs rendered into a supervisord of their own."""

from __future__ import annotations

from dataclasses import replace

from projectname.topology import BULK_POOL, TOPOLOGY
from queueworks.core.topology import Balance, Queue, Worker

SOLO_QUEUE, PREFORK_QUEUE = "test.balance_solo", "test.balance_prefork"
SOLO, PREFORK = "balance_solo", "balance_prefork"
BUDGET, MINIMUM, MAXIMUM, COOLDOWN = 3, 1, 2, 2.0

PROCESSES_TOPOLOGY = replace(
    TOPOLOGY.with_added(
        queues=(Queue(SOLO_QUEUE, "balancer live test, processes", dead_letter=False),
                Queue(PREFORK_QUEUE, "balancer live test, prefork", dead_letter=False)),
        workers=(
            Worker(name=SOLO, queues=(SOLO_QUEUE,), pool=BULK_POOL, concurrency=1, processes=1,
                   prefetch_multiplier=2, task_events=False, task_events_lease=30,
                   soft_time_limit=30, time_limit=60, max_memory_per_child=None),
            Worker(name=PREFORK, queues=(PREFORK_QUEUE,), concurrency=2, prefetch_multiplier=1,
                   task_events=False, task_events_lease=30, soft_time_limit=30, time_limit=60,
                   max_memory_per_child=None),
        ),
    ),
    balance=Balance(workers=(SOLO, PREFORK), budget=BUDGET, min_processes=MINIMUM,
                    max_processes=MAXIMUM, max_shift=1, cooldown_seconds=COOLDOWN,
                    interval_seconds=1.0, runtime_window=20),
)
TOPOLOGY_PATH = "tests.queueworks.balancer.processes_topology:PROCESSES_TOPOLOGY"
SETTINGS = "tests.queueworks.balancer.processes_settings"
