"""A worker's fork of pool processes, next to the database, at a small size.

Run as ``python -m tests.support.db_fork_probe <scenario> <database url> <forks>``
with ``DJANGO_SETTINGS_MODULE`` set; prints one JSON line.

The parent plays a prefork worker's main process and forks ``forks`` pool
processes with billiard (the pool's own fork); each child stores one result
through the project's results backend, as a pool process does after a task,
with a 1 s busy timeout.  Scenarios (what the parent does while it forks):

* ``flusher``: the metrics recorder's flush thread writes the main process's
  tally (revokes, lost processes, hard time limits are counted there) over and
  over, so a fork can land inside its write transaction; the counting pauses
  from the fork until the child has written, so the child never competes with
  a live writer;
* ``main-thread``: the main thread reads the database before every fork (the
  ``task_received`` cancellation check) and the child writes through the
  connection it inherited;
* ``reader``: another thread holds a read transaction open across the forks.

The JSON says how many children could not write and the slowest write.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid


def _setup(database_url: str) -> None:
    import os

    os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.db import connection
    from django_celery_results.models import TaskResult

    from queueworks.metrics.models import TaskMinute, TaskTotal

    # A pool process's busy timeout, shortened: a write that waits 1 s for a
    # lock nobody releases is the 30 s wait of a real worker.
    connection.settings_dict["OPTIONS"]["timeout"] = 1
    with connection.schema_editor() as editor:
        for model in (TaskResult, TaskTotal, TaskMinute):
            editor.create_model(model)


def _child_write(result_queue) -> None:
    from celery import states

    from queueworks.conf import celery_app

    time.sleep(0.2)  # the parent's writes have stopped (``paused``)
    started = time.monotonic()
    try:
        celery_app().backend._store_result(str(uuid.uuid4()), 1, states.SUCCESS)
        outcome = "ok"
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        outcome = f"{type(exc).__name__}: {exc}"
    result_queue.put((outcome, time.monotonic() - started))


def main(scenario: str, database_url: str, forks: int) -> dict:
    _setup(database_url)
    import billiard
    from django.db import close_old_connections, connection, connections

    from queueworks.metrics import recorder

    stop = threading.Event()
    paused = threading.Event()
    helpers: list[threading.Thread] = []
    if scenario == "flusher":
        recorder.RECORDER.enabled = True
        recorder.FLUSH_SECONDS = 0.001

        def count_forever():
            while not stop.is_set():
                if paused.is_set():
                    time.sleep(0.005)
                    continue
                for number in range(50):
                    recorder.RECORDER.add(f"probe.task_{number}", "revoked")
                time.sleep(0.001)

        helpers.append(threading.Thread(target=count_forever, daemon=True))
    elif scenario == "reader":
        def read_forever():
            cursor = connections["default"].cursor()
            while not stop.is_set():
                cursor.execute("BEGIN")
                cursor.execute("SELECT count(*) FROM django_celery_results_taskresult")
                cursor.fetchall()
                time.sleep(0.05)
                cursor.execute("COMMIT")

        helpers.append(threading.Thread(target=read_forever, daemon=True))
    for helper in helpers:
        helper.start()
    time.sleep(0.2)

    results = billiard.SimpleQueue()
    failures: list[str] = []
    slowest = 0.0
    for _ in range(forks):
        if scenario == "main-thread":
            close_old_connections()
            list(connection.cursor().execute("SELECT 1"))
        child = billiard.Process(target=_child_write, args=(results,))
        child.start()
        paused.set()
        child.join(30)
        outcome, seconds = results.get()
        slowest = max(slowest, seconds)
        if outcome != "ok":
            failures.append(outcome)
        paused.clear()
        time.sleep(0.05)
    stop.set()
    return {"scenario": scenario, "forks": forks, "failed": len(failures),
            "slowest_write_seconds": round(slowest, 3), "errors": sorted(set(failures))}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))), flush=True)
