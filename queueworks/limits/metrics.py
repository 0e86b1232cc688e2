"""The limits' metrics on /metrics (queueworks/metrics/exposition.py reads them
as the ``limits`` source; names in queueworks/metrics/names.py)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from queueworks.metrics import names


def unique_families(topology):
    from queueworks.limits.selectors import unique_overview

    claims = GaugeMetricFamily(names.UNIQUE_CLAIMS,
                               "Unique keys held, by state (waiting, running, expired)",
                               labels=["task", "state"])
    duplicates = CounterMetricFamily(
        names.UNIQUE_DUPLICATES,
        "Enqueues of a unique task answered with the holder's id (nothing started)",
        labels=["task"])
    superseded = CounterMetricFamily(
        names.UNIQUE_SUPERSEDED,
        "Messages of a unique task that ran nothing: their key had passed to another task",
        labels=["task"])
    for row in unique_overview(topology):
        for state in ("waiting", "running", "expired"):
            claims.add_metric([row.task_name, state], getattr(row, state))
        duplicates.add_metric([row.task_name], row.duplicates)
        superseded.add_metric([row.task_name], row.superseded)
    return claims, duplicates, superseded


def fair_families(topology):
    from queueworks.core.broker_state import queue_states
    from queueworks.limits.selectors import fair_overview, fair_queue_names

    sub_queues = fair_queue_names(topology)
    if not sub_queues:
        return ()
    stats = queue_states(sub_queues)
    depth = GaugeMetricFamily(names.FAIR_BUCKET_MESSAGES,
                              "Messages in a fair-sharing sub-queue (a bucket of keys)",
                              labels=["queue", "bucket", "state"])
    for row in fair_overview(topology, stats):
        for bucket in row["buckets"]:
            for state in ("ready", "unacked"):
                if bucket[state] is not None:
                    depth.add_metric([row["queue"], str(bucket["bucket"]), state],
                                     bucket[state])
    return (depth,)


def rate_concurrency_families():
    from queueworks.limits.selectors import limit_states

    labels = ["limit", "key"]
    waiting = GaugeMetricFamily(names.LIMIT_WAITING,
                                "Calls refused by the limit, waiting to start", labels=labels)
    running = GaugeMetricFamily(names.LIMIT_RUNNING,
                                "Slots of the concurrency limit held by running calls",
                                labels=labels)
    starts = CounterMetricFamily(names.LIMIT_STARTS, "Calls the limit let start",
                                 labels=labels)
    refusals = CounterMetricFamily(names.LIMIT_REFUSALS,
                                   "Times a call was over the limit and deferred",
                                   labels=labels)
    waited = CounterMetricFamily(names.LIMIT_WAIT_SECONDS,
                                 "Seconds calls waited for the limit before they started",
                                 labels=labels)
    for state in limit_states():
        values = [state.limit, state.key]
        waiting.add_metric(values, state.waiting)
        running.add_metric(values, state.running)
        starts.add_metric(values, state.started)
        refusals.add_metric(values, state.refused)
        waited.add_metric(values, state.waited_seconds)
    return waiting, running, starts, refusals, waited


def limits_families(topology):
    return (*rate_concurrency_families(), *unique_families(topology), *fair_families(topology))
