"""What /metrics shows: a prometheus_client collector over the project's sources.

Each scrape reads, once:

* the queues from ``queueworks/core/broker_state.py`` (RabbitMQ's management API):
  ready, unacknowledged, consumers, and the oldest ready message's wait from
  ``head_message_timestamp`` (every task message carries its publish time,
  ``queueworks/ops/signals.py``, so no message is peeked at);
* the task tallies the workers write (``queueworks/metrics/recorder.py``);
* the workers' pool processes from the shared workers snapshot
  (``queueworks/taskapi/worker_snapshot.py``, Celery's ``inspect stats``);
* supervisord's program states on this host;
* the balancer's decisions (``queueworks/metrics/balancer.py``);
* the rate and concurrency limits per limit and key (``queueworks/limits/selectors.py``).

A source that cannot be read sets ``projectname_metrics_source_up{source}`` to
0 and leaves its metrics out; the scrape itself still succeeds.
"""

from __future__ import annotations

import logging

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from queueworks.metrics import names
from queueworks.conf import TOPOLOGY

logger = logging.getLogger(__name__)


class ProjectCollector(Collector):
    def collect(self):
        up = GaugeMetricFamily(names.SOURCE_UP, "1 when the source could be read in this scrape",
                               labels=["source"])
        for source, read in (("broker", self._queues), ("database", self._tasks),
                             ("workers", self._workers), ("supervisord", self._programs),
                             ("balancer", self._balancer), ("limits", self._limits)):
            try:
                families = list(read())
            except Exception:  # noqa: BLE001 - one unreadable source must not hide the others
                logger.exception("metrics: cannot read %s", source)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up

    # -- queues ------------------------------------------------------------
    def _queues(self):
        from queueworks.limits.fair import fair_queue_states

        # A fair queue's gauges include its sub-queues (each bucket: the limits
        # source), stranded ones too.
        states = fair_queue_states(TOPOLOGY)
        ready = GaugeMetricFamily(names.QUEUE_READY, "Messages ready for delivery", labels=["queue"])
        unacked = GaugeMetricFamily(names.QUEUE_UNACKED, "Messages delivered, not yet acknowledged",
                                    labels=["queue"])
        consumers = GaugeMetricFamily(names.QUEUE_CONSUMERS, "Consumers of the queue",
                                      labels=["queue"])
        wait = GaugeMetricFamily(names.QUEUE_OLDEST_WAIT,
                                 "Seconds the oldest ready message has waited (0: none waiting)",
                                 labels=["queue"])
        exists = GaugeMetricFamily(names.QUEUE_UP, "1 when the queue exists on the broker",
                                   labels=["queue"])
        for name, state in states.items():
            exists.add_metric([name], int(state.exists))
            if not state.exists:
                continue
            ready.add_metric([name], state.ready)
            unacked.add_metric([name], state.unacked)
            consumers.add_metric([name], state.consumers)
            wait.add_metric([name], state.oldest_wait or 0.0)
        return ready, unacked, consumers, wait, exists

    # -- tasks -------------------------------------------------------------
    def _tasks(self):
        from queueworks.metrics.selectors import task_totals

        totals = task_totals()
        outcomes = CounterMetricFamily(
            names.TASKS, "Task deliveries finished, by outcome (success, failure, retry, revoked)",
            labels=["task", "outcome"])
        runtime = HistogramMetricFamily(names.TASK_RUNTIME,
                                        "Seconds a task ran in its worker process", labels=["task"])
        result_writes = CounterMetricFamily(
            names.RESULT_WRITES,
            "Result writes the database refused: written again (retried) or the message "
            "returned to its queue (requeued)", labels=["task", "outcome"])
        deferred = CounterMetricFamily(
            names.OUTBOX_DEFERRED,
            "Task API starts accepted while the broker did not take the message; the "
            "outbox published them later", labels=["task"])
        for task_name, entry in sorted(totals.items()):
            if entry.outcomes.get(names.OUTBOX_DEFERRED_KEY):
                deferred.add_metric([task_name], entry.outcomes[names.OUTBOX_DEFERRED_KEY])
            for outcome in names.OUTCOMES:
                outcomes.add_metric([task_name, outcome], entry.outcomes.get(outcome, 0.0))
            for outcome in names.RESULT_OUTCOMES:
                count = entry.outcomes.get(names.result_key(outcome))
                if count:
                    result_writes.add_metric([task_name, outcome], count)
            if entry.runtime.count:
                runtime.add_metric([task_name], entry.runtime.cumulative(),
                                   sum_value=entry.runtime.total)
        return outcomes, runtime, result_writes, deferred

    # -- workers -----------------------------------------------------------
    def _workers(self):
        from queueworks.taskapi.worker_snapshot import workers_snapshot

        snapshot = workers_snapshot()
        if snapshot is None or snapshot.workers is None:
            raise RuntimeError(snapshot.error if snapshot else "no workers snapshot yet")
        processes = GaugeMetricFamily(names.WORKER_POOL_PROCESSES,
                                      "Pool processes of a worker node (inspect stats)",
                                      labels=["program", "node"])
        online = GaugeMetricFamily(names.WORKER_ONLINE,
                                   "Worker nodes of the program answering inspect",
                                   labels=["program"])
        per_program = {worker.name: 0 for worker in TOPOLOGY.workers}
        for worker in snapshot.workers:
            if worker["status"] != "online":
                continue
            per_program[worker["program"]] = per_program.get(worker["program"], 0) + 1
            pool = worker.get("pool") or {}
            count = pool.get("processes")
            count = len(count) if isinstance(count, list) else pool.get("max_concurrency") or 0
            processes.add_metric([worker["program"], worker["hostname"]], count)
        for program, nodes in sorted(per_program.items()):
            online.add_metric([program], nodes)
        return processes, online

    def _programs(self):
        from queueworks.ops.programs import program_states

        running = GaugeMetricFamily(names.PROGRAM_RUNNING,
                                    "1 when supervisord on this host runs the program",
                                    labels=["program", "state"])
        for name, state in sorted(program_states().items()):
            running.add_metric([name, state.state], int(state.state == "RUNNING"))
        return (running,)

    def _limits(self):
        from queueworks.limits.metrics import limits_families

        return limits_families(TOPOLOGY)

    def _balancer(self):
        from queueworks.metrics.balancer import LABELS, decision_counts

        decisions = CounterMetricFamily(names.BALANCER_DECISIONS,
                                        "Pool-size moves the queue balancer made", labels=LABELS)
        for row_labels, count in decision_counts():
            decisions.add_metric([row_labels[key] for key in LABELS], count)
        return (decisions,)
