"""A task that ran is never recorded as failed because the database refused
its result: the write is made again (bounded), or the message goes back to its
queue and the result is written when it runs again.  Another process holds
SQLite's write lock (BEGIN IMMEDIATE) past the busy timeout; the task runs
through Celery's tracer (tests/support/result_lock_probe.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _probe(hold: float, tmp_path) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", "tests.support.result_lock_probe", str(hold),
         f"sqlite:///{tmp_path / 'locked.sqlite3'}"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1]), run.stderr


def test_a_lock_shorter_than_the_retries_is_outlasted(tmp_path):
    # Held 1.5 s: three busy timeouts of 0.5 s and the backoff cover it.
    report, log = _probe(1.5, tmp_path)
    assert report["first_run"] == "returned", report
    assert report["final_status"] == "SUCCESS", report
    assert report["counts"].get("result_retried", 0) >= 1, report
    assert "result_requeued" not in report["counts"], report
    assert "writing it again" in log


def test_a_lock_longer_than_the_retries_returns_the_message(tmp_path):
    report, log = _probe(8.0, tmp_path)
    assert report["first_run"] == "Reject(requeue=True)", report
    assert "FAILURE" not in report["status_after_first_run"], report
    assert report["final_status"] == "SUCCESS", report
    assert report["counts"].get("result_requeued") == 1, report
    assert "goes back to the queue" in log
