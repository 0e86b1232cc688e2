"""A pool process's last tally reaches the database when it exits, even when
its task was interrupted in the middle of a query (the soft time limit): the
exit's flush must not use the connection that query left busy.  PostgreSQL,
where an interrupted query leaves the connection ACTIVE; the probe is
tests/support/exit_flush_probe.py (billiard's pool, soft limit and exit hook)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.postgres import throwaway_database

ROOT = Path(__file__).resolve().parents[3]
TALLIES = 25


def test_a_pool_process_exiting_after_an_interrupted_query_keeps_its_tally():
    with throwaway_database() as url:
        run = subprocess.run(
            [sys.executable, "-m", "tests.support.exit_flush_probe", url, str(TALLIES)],
            cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
            capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["job"] == "SoftTimeLimitExceeded", report  # the query was interrupted
    assert report["stored"] == TALLIES, (report, run.stderr[-2000:])
    assert "connection in transaction status" not in run.stderr, run.stderr[-2000:]
