"""A task's result write against a database locked by another process.

Run as ``python -m tests.support.result_lock_probe <hold seconds> <database url>``
with ``DJANGO_SETTINGS_MODULE`` set; prints one JSON line.

The task runs through Celery's own tracer (what a pool process runs for each
message) with the project's results backend on an SQLite file whose busy
timeout is 0.5 s.  Its body starts another process that takes the write lock
(BEGIN IMMEDIATE) and holds it ``hold`` seconds, so the SUCCESS write meets
the lock.  Then, as the worker would on a requeued message, the task runs once
more after the lock is gone.  The JSON has what the first run ended in, the
states stored, and the recorder's result-write counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

BUSY_TIMEOUT = 0.5
LOCKER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
c.execute("COMMIT")
"""


def main(hold: float, database_url: str) -> dict:
    os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from celery.app.trace import build_tracer
    from celery.exceptions import Reject
    from django.db import connection
    from django_celery_results.models import TaskResult

    from queueworks.conf import celery_app
    from queueworks.metrics import recorder
    from queueworks.metrics.models import TaskMinute, TaskTotal

    connection.settings_dict["OPTIONS"]["timeout"] = BUSY_TIMEOUT
    with connection.schema_editor() as editor:
        for model in (TaskResult, TaskTotal, TaskMinute):
            editor.create_model(model)
    recorder.RECORDER.enabled = True
    recorder.FLUSH_SECONDS = 3600
    app = celery_app()
    lockers: list[subprocess.Popen] = []

    @app.task(name="probe.result_lock", bind=True)
    def probe(self, lock: bool):
        if lock:
            locker = subprocess.Popen(
                [sys.executable, "-c", LOCKER, connection.settings_dict["NAME"], str(hold)],
                stdout=subprocess.PIPE, text=True)
            locker.stdout.readline()
            lockers.append(locker)
        return 42

    tracer = build_tracer(probe.name, probe, app=app, eager=False)
    task_id = str(uuid.uuid4())
    request = {"id": task_id, "task": probe.name, "delivery_info": {"routing_key": "main_worker"}}
    started = time.monotonic()
    try:
        tracer(task_id, (True,), {}, request)
        first = "returned"
    except Reject as exc:
        first = f"Reject(requeue={exc.requeue})"
    seconds = round(time.monotonic() - started, 2)
    status_after_first = TaskResult.objects.filter(task_id=task_id).values_list("status", flat=True)
    status_after_first = list(status_after_first)
    for locker in lockers:
        locker.wait(timeout=hold + 30)
    if first != "returned":  # the requeued message runs again
        tracer(task_id, (False,), {}, request)
    counts = {key: amount for (_, _, key), amount in recorder.RECORDER.take().items()
              if key.startswith("result_")}
    return {"hold": hold, "first_run": first, "first_run_seconds": seconds,
            "status_after_first_run": status_after_first,
            "final_status": TaskResult.objects.get(task_id=task_id).status, "counts": counts}


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]), sys.argv[2])), flush=True)
