"""bench/fairness.py's topology (also tests/queueworks/limits/test_fair_live.py):
one lane shared fairly between tenants and one plain FIFO lane, each
consumed by a worker program of the same shape.

``apps.testing.tasks.fair_job`` is routed to the fair lane with
``FairShare(key="tenant_id")``; the FIFO run sends the same task to the FIFO
lane by name (an explicit other queue is never re-routed).
"""

from __future__ import annotations

import os

from queueworks.core.topology import Queue, Route, Worker
from queueworks.limits.declaration import FairShare
from projectname.topology import TOPOLOGY as PROJECT_TOPOLOGY

BUCKETS = int(os.environ.get("BENCH_FAIR_BUCKETS", "8"))
CONCURRENCY = int(os.environ.get("BENCH_FAIR_CONCURRENCY", "2"))
# The lanes' queue type: TASK_QUEUE_TYPE's (quorum on the suite's 4.x node),
# classic by default.  A quorum lane dead-letters (a quorum queue drops a
# message past its delivery limit otherwise); a classic one needs not.
LANE_TYPE = os.environ.get("TASK_QUEUE_TYPE") or "classic"
DEAD_LETTER = LANE_TYPE == "quorum"
# Queue names the test vhost's permissions allow (tests/support/rabbit.py).
FAIR_QUEUE, FIFO_QUEUE = "test.bench_fair", "test.bench_fifo"
FAIR_PROGRAM, FIFO_PROGRAM = "bench_fair", "bench_fifo"
TASK = "apps.testing.tasks.fair_job"


def _worker(name: str, queue: str) -> Worker:
    return Worker(name=name, queues=(queue,), concurrency=CONCURRENCY, prefetch_multiplier=1,
                  task_events=False, soft_time_limit=30, time_limit=60,
                  max_memory_per_child=None, log_level="WARNING")


TOPOLOGY = PROJECT_TOPOLOGY.with_added(
    queues=(Queue(FAIR_QUEUE, "fair sharing benchmark lane", dead_letter=DEAD_LETTER,
                  fair_buckets=BUCKETS, queue_type=LANE_TYPE),
            Queue(FIFO_QUEUE, "FIFO benchmark lane", dead_letter=DEAD_LETTER,
                  queue_type=LANE_TYPE)),
    workers=(_worker(FAIR_PROGRAM, FAIR_QUEUE), _worker(FIFO_PROGRAM, FIFO_QUEUE)),
    routes=(Route(TASK, FAIR_QUEUE, fair_share=FairShare(key="tenant_id")),),
)
