"""Processes contending for one rate limit or one concurrency limit.

Run as ``python -m tests.support.limits_contention_probe <database url>
<rate|concurrency> <processes> <seconds>`` with ``DJANGO_SETTINGS_MODULE``
set; prints one JSON line.  Each process takes starts (or slots) in a loop,
as workers on different hosts would, through the same functions the task
start uses; the JSON says what the limit let through.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
import uuid

from tests.support.probe_database import probe_tables_create

RATE = dict(starts=20, per_seconds=1.0, burst=2)
RUNNING = 3
LIMIT = "probe:limit"


def _setup(database_url: str) -> None:
    import importlib

    from django.db import connection

    probe_tables_create(database_url, "limits.LimitKey", "limits.ConcurrencySlot",
                        "limits.LimitWaiter", "limits.LimitTally")
    # The rate decision's database function (PostgreSQL), as its migration makes it.
    migration = importlib.import_module("queueworks.limits.migrations.0004_rate_decide_function")
    with connection.schema_editor() as editor:
        migration.create(None, editor)
    connection.close()


def _rate_worker(deadline: float, out) -> None:
    from queueworks.limits.declaration import RateLimit
    from queueworks.limits.enforcement import limits_decide
    from queueworks.limits.rules import TaskLimits

    # The decision a task start takes (one statement on PostgreSQL).
    limits = TaskLimits(task="probe", rate=RateLimit(**RATE), concurrency=None,
                        lease_seconds=30.0)
    # Like a worker process: calls keep arriving; a refused call comes back
    # when it was told to (first among the calls due), the process takes the
    # next one meanwhile.
    import heapq

    starts, refused, deferred = [], 0, []
    while time.time() < deadline:
        now = time.time()
        if deferred and deferred[0][0] <= now:
            _, task_id, since = heapq.heappop(deferred)
        else:
            task_id, since = str(uuid.uuid4()), None
        wait = limits_decide(limits=limits, task_id=task_id, rate_key="k",
                             concurrency_key=None, since=since, now=now).wait
        if not wait:
            starts.append(now)
        else:
            refused += 1
            heapq.heappush(deferred, (now + wait, task_id, since or now))
            time.sleep(0.005)
    out.put((starts, refused))


def _concurrency_worker(deadline: float, out) -> None:
    from django.db import transaction

    from queueworks.limits.concurrency import RUN, slot_release, slot_take
    from queueworks.limits.declaration import ConcurrencyLimit
    from queueworks.limits.models import LimitWaiter

    rule, runs, refused = ConcurrencyLimit(running=RUNNING), [], 0
    while time.time() < deadline:
        task_id = str(uuid.uuid4())
        with transaction.atomic():
            outcome = slot_take(limit=LIMIT, key="k", task_id=task_id, rule=rule,
                                lease_seconds=30)
        if outcome != RUN:
            # Parked: this probe has no messages to hand over; it asks again.
            refused += 1
            LimitWaiter.objects.filter(task_id=task_id).delete()
            time.sleep(0.01)
            continue
        started = time.time()
        time.sleep(0.1)
        ended = time.time()
        with transaction.atomic():
            slot_release(limit=LIMIT, key="k", task_id=task_id)
        runs.append((started, ended))
    out.put((runs, refused))


def main(database_url: str, mode: str, processes: int, seconds: float) -> dict:
    _setup(database_url)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    deadline = time.time() + 1.0 + seconds
    target = _rate_worker if mode == "rate" else _concurrency_worker
    workers = [context.Process(target=target, args=(deadline, out)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    received = [out.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join(30)
    results = [result for result, _ in received]
    refused = sum(count for _, count in received)
    if mode == "rate":
        starts = sorted(t for result in results for t in result)
        first = starts[0] if starts else 0.0
        # Half-open windows of the period, anchored at each start.
        most = max((sum(1 for t in starts if s <= t < s + RATE["per_seconds"] - 1e-6)
                    for s in starts), default=0)
        span = (starts[-1] - first) if len(starts) > 1 else 0.0
        return {"starts": len(starts), "most_in_a_window": most, "span": span,
                "refused": refused, "per_process": [len(r) for r in results]}
    edges = sorted([(s, 1) for r in results for s, _ in r] + [(e, -1) for r in results for _, e in r],
                   key=lambda edge: (edge[0], edge[1]))
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return {"runs": sum(len(r) for r in results), "most_running": most, "refused": refused,
            "per_process": [len(r) for r in results]}


if __name__ == "__main__":
    url, mode, processes, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(main(url, mode, processes, seconds)))
