"""A pool process that exits in the middle of a query, and its metrics tally.

Run as ``python -m tests.support.exit_flush_probe <database url> <tallies>``
with ``DJANGO_SETTINGS_MODULE`` set; prints one JSON line.

A billiard pool (the prefork pool's own, with its soft time limit and
Celery's exit hook that sends ``worker_process_shutdown``) runs one job in
its process: it counts ``tallies`` successes in the metrics recorder, then
starts a 20 s query.  The soft time limit (1 s) raises SoftTimeLimitExceeded
inside the query, which the job catches as Celery's tracer does; the process
has reached its max tasks and exits through its exit hook, which flushes the
recorder.  The JSON has the count the database then holds (the tally is
flushed only at exit: the flush thread's interval is set far beyond the run).
"""

from __future__ import annotations

import json
import sys
import time

from tests.support.probe_database import probe_tables_create

TASK = "probe.exit_flush"


def _setup(database_url: str) -> None:
    probe_tables_create(database_url, "metrics.TaskTotal", "metrics.TaskMinute")


def _job(tallies: int) -> str:
    from django.db import connection

    from queueworks.metrics import names
    from queueworks.metrics.recorder import RECORDER

    for _ in range(tallies):
        RECORDER.add(TASK, names.SUCCESS)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(20)")
    except Exception as exc:  # noqa: BLE001 - the tracer records it as the task's failure
        return type(exc).__name__
    return "no time limit"


def main(database_url: str, tallies: int) -> dict:
    _setup(database_url)
    from billiard.pool import Pool
    from celery.concurrency.prefork import process_destructor

    from queueworks.metrics import recorder
    from queueworks.metrics.models import TaskTotal

    recorder.RECORDER.enabled = True
    recorder.FLUSH_SECONDS = 3600  # only the exit's flush writes
    pool = Pool(1, maxtasksperchild=1, soft_timeout=1, timeout=30, enable_timeouts=True,
                on_process_exit=process_destructor)
    started = time.monotonic()
    interrupted = pool.apply_async(_job, (tallies,)).get(timeout=30)
    stored = 0.0
    while time.monotonic() - started < 15:
        stored = sum(TaskTotal.objects.filter(task_name=TASK).values_list("value", flat=True))
        if stored >= tallies:
            break
        time.sleep(0.2)
    pool.terminate()
    return {"job": interrupted, "tallies": tallies, "stored": stored,
            "seconds_to_store": round(time.monotonic() - started, 2)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))), flush=True)
