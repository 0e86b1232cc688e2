"""Metric names and the runtime histogram's buckets, in one place.

Every name starts with the project's name (``QUEUEWORKS_PROJECT_NAME``):
``projectname_`` in the example project, whose Grafana dashboard
(deploy/grafana/projectname.json) and docs/metrics.md use these names; a test
checks the dashboard against a real scrape.
"""

from __future__ import annotations

import re
from bisect import bisect_left


def _prefix() -> str:
    """The project's name (QUEUEWORKS_PROJECT_NAME, else the settings module's
    top package), as a Prometheus name allows it; "queueworks" before Django
    is configured (a script that only reads the names)."""
    from django.core.exceptions import ImproperlyConfigured

    from queueworks.conf import project_name

    try:
        name = project_name()
    except ImproperlyConfigured:
        name = "queueworks"
    name = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return name if re.match(r"[a-zA-Z_]", name) else f"_{name}"


PREFIX = _prefix()

QUEUE_READY = f"{PREFIX}_queue_messages_ready"
QUEUE_UNACKED = f"{PREFIX}_queue_messages_unacked"
QUEUE_CONSUMERS = f"{PREFIX}_queue_consumers"
QUEUE_OLDEST_WAIT = f"{PREFIX}_queue_oldest_message_wait_seconds"
QUEUE_UP = f"{PREFIX}_queue_up"
TASKS = f"{PREFIX}_tasks"  # a counter: exposed as projectname_tasks_total{task,outcome}
TASK_RUNTIME = f"{PREFIX}_task_runtime_seconds"
WORKER_POOL_PROCESSES = f"{PREFIX}_worker_pool_processes"
WORKER_ONLINE = f"{PREFIX}_worker_online"
PROGRAM_RUNNING = f"{PREFIX}_program_running"
BALANCER_DECISIONS = f"{PREFIX}_balancer_decisions"  # exposed as ..._total
SOURCE_UP = f"{PREFIX}_metrics_source_up"
# Result writes the database refused: exposed as ..._total{task,outcome}.
RESULT_WRITES = f"{PREFIX}_result_writes"
# Task API starts the broker did not take at once, relayed by the outbox
# (queueworks/taskapi/recorded.py): exposed as ..._total{task}, from the tally
# key OUTBOX_DEFERRED_KEY.
OUTBOX_DEFERRED = f"{PREFIX}_taskapi_outbox_deferred"
OUTBOX_DEFERRED_KEY = "outbox_deferred"
# Unique tasks and fair sharing (queueworks/limits/metrics.py).
UNIQUE_CLAIMS = f"{PREFIX}_unique_claims"  # {task,state}
UNIQUE_DUPLICATES = f"{PREFIX}_unique_duplicates"  # exposed as ..._total{task}
UNIQUE_SUPERSEDED = f"{PREFIX}_unique_superseded"  # exposed as ..._total{task}
FAIR_BUCKET_MESSAGES = f"{PREFIX}_fair_bucket_messages"  # {queue,bucket,state}

# Rate and concurrency limits (queueworks/limits), per limit and key: calls
# waiting for their limit and slots held (gauges); starts, refusals and the
# seconds waited before starting (counters, exposed as ..._total).
LIMIT_WAITING = f"{PREFIX}_limit_waiting"
LIMIT_RUNNING = f"{PREFIX}_limit_running"
LIMIT_STARTS = f"{PREFIX}_limit_starts"
LIMIT_REFUSALS = f"{PREFIX}_limit_refusals"
LIMIT_WAIT_SECONDS = f"{PREFIX}_limit_wait_seconds"

# What a finished delivery of a task counts as (the ``outcome`` label).
SUCCESS, FAILURE, RETRY, REVOKED = "success", "failure", "retry", "revoked"
OUTCOMES = (SUCCESS, FAILURE, RETRY, REVOKED)

# What became of a result write the database refused (its tally key is
# "result_<outcome>"): written again, or the message returned to its queue.
RESULT_RETRIED, RESULT_REQUEUED = "retried", "requeued"
RESULT_OUTCOMES = (RESULT_RETRIED, RESULT_REQUEUED)


def result_key(outcome: str) -> str:
    return f"result_{outcome}"

# Upper bounds (seconds) of the runtime histogram: from the bulk lane's
# milliseconds to the heavy lane's 30-minute time limit.
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 120.0, 300.0, 600.0, 1800.0)
INF = "+Inf"

# Keys of the tally tables: an outcome, the runtime sum, or one histogram
# bucket ("le:<bound>", counted non-cumulatively; cumulated when read).
RUNTIME_SUM = "runtime_sum"


def bucket_key(seconds: float) -> str:
    """The key of the smallest bucket that holds ``seconds`` (bounds are inclusive)."""
    return BUCKET_KEYS[bisect_left(RUNTIME_BUCKETS, seconds)]


def bucket_bound(key: str) -> float:
    text = key.removeprefix("le:")
    return float("inf") if text == INF else float(text)


BUCKET_KEYS = tuple(f"le:{bound}" for bound in RUNTIME_BUCKETS) + (f"le:{INF}",)
