"""bench/balance.py's topology: N lanes of one balanced program each.

Read by the benchmark and by the programs it starts (the workers through
bench/balance_settings.py, the balancer through ``--topology``), so its size
comes from the environment the benchmark sets: BENCH_BALANCE_QUEUES lanes,
BENCH_BALANCE_BUDGET processes in all (static: budget / lanes each).
"""

from __future__ import annotations

import os
from dataclasses import replace

from queueworks.core.topology import Balance, Queue, Worker
from projectname.topology import TOPOLOGY as PROJECT_TOPOLOGY

LANES = int(os.environ.get("BENCH_BALANCE_QUEUES", "3"))
BUDGET = int(os.environ.get("BENCH_BALANCE_BUDGET", "12"))
MAX_SHIFT = int(os.environ.get("BENCH_BALANCE_MAX_SHIFT", "4"))
COOLDOWN = float(os.environ.get("BENCH_BALANCE_COOLDOWN", "2"))
# Queue names the test vhost's permissions allow (tests/support/rabbit.py).
QUEUES = tuple(f"test.bench_{chr(ord('a') + index)}" for index in range(LANES))
PROGRAMS = tuple(f"bench_{chr(ord('a') + index)}" for index in range(LANES))

TOPOLOGY = replace(
    PROJECT_TOPOLOGY.with_added(
        queues=tuple(Queue(name, "balancer benchmark lane", dead_letter=False) for name in QUEUES),
        workers=tuple(
            Worker(name=program, queues=(queue,), concurrency=BUDGET // LANES,
                   prefetch_multiplier=1, task_events=False, task_events_lease=30,
                   soft_time_limit=30, time_limit=60, max_memory_per_child=None)
            for program, queue in zip(PROGRAMS, QUEUES)
        ),
    ),
    balance=Balance(workers=PROGRAMS, budget=BUDGET, min_processes=1,
                    max_processes=BUDGET - (LANES - 1), max_shift=MAX_SHIFT,
                    cooldown_seconds=COOLDOWN, interval_seconds=1.0, runtime_window=50),
)
