"""Prefetch headroom: a few messages more than ``concurrency x multiplier``.

With priorities a worker should hold as few messages as possible (a
priority-9 message can only overtake what is still in the broker), so
``main_worker`` runs with prefetch multiplier 1: one unacknowledged message
per pool process.  With acks late that leaves each process idle for a broker
round trip after every task: the ack goes out, only then may the broker send
the next message, and only then can the parent hand it to the process
(bench/main_lane.py prices it: docs/performance-main-lane.md).

``WORKER_PREFETCH_HEADROOM=n`` (rendered from ``Worker.prefetch_headroom``
in the topology) raises the worker's prefetch count by ``n`` messages, not
by ``n`` per process: with ``n=1`` one message waits in the worker, ready
for the first process that frees up, while everything else still waits in
the broker in priority order.  A priority-9 message is then overtaken by at
most ``n`` messages more than with headroom 0.

It goes through kombu's ``QoS`` object of the consumer (its public
``increment_eventually``/``update``), after Celery's ``Tasks`` step has
created it; on every consumer restart (a lost connection) the step runs again
from Celery's initial count, so the headroom is never added twice.  Autoscale
changes the count relative to its current value and keeps it.
"""

from __future__ import annotations

import logging

from celery import bootsteps

from queueworks.core.runtime import bounded_int_from_environment

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "WORKER_PREFETCH_HEADROOM"
MAX_HEADROOM = 100


def headroom_from_environment() -> int:
    return bounded_int_from_environment(ENVIRONMENT_VARIABLE, maximum=MAX_HEADROOM,
                                        unit="a whole number",
                                        otherwise="running without headroom")


class PrefetchHeadroom(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.headroom = headroom_from_environment()

    def start(self, c):
        qos = getattr(c, "qos", None)
        # value 0 means "no limit": nothing to add to.
        if not self.headroom or qos is None or not qos.value:
            return
        qos.increment_eventually(self.headroom)
        qos.update()
        logger.info("Prefetch count %d (%d per process plus %d of headroom).",
                    qos.value, qos.value - self.headroom, self.headroom)


class AutoscalePrefetch(bootsteps.StartStopStep):
    """An autoscaled worker keeps the prefetch count of its largest pool.

    Celery's autoscaler grows the pool only while more messages are reserved
    than processes run, so the worker starts with a prefetch count for its
    maximum.  After a lost connection Celery sets the count again from the
    pool's *current* size: a worker shrunk to one process came back with
    prefetch 1, never reserved a second message and never grew again.  On
    every consumer start this raises the count back to the maximum's (through
    the consumer's public ``QoS``); on the first start it is already there.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c):
        autoscaler = getattr(c.controller, "autoscaler", None)
        qos = getattr(c, "qos", None)
        # value 0 means "no limit": nothing to raise.
        if autoscaler is None or qos is None or not qos.value:
            return
        wanted = autoscaler.max_concurrency * max(c.prefetch_multiplier, 1)
        if qos.value < wanted:
            logger.info("Prefetch count back to %d for up to %d processes (it was %d "
                        "after the connection restarted).", wanted,
                        autoscaler.max_concurrency, qos.value)
            qos.increment_eventually(wanted - qos.value)
            qos.update()
