"""Fair sharing through the real broker and a real prefork worker, at small
size: tenant A enqueues 2,000 tasks, then tenant B 20, on one lane.  Plain
FIFO makes B wait behind all of A; with fair sharing B is done long before A
(bench/fairness.py, the same measurement at full size)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.live]


def test_a_small_tenant_is_not_stuck_behind_a_flood():
    run = subprocess.run(
        [sys.executable, "bench/fairness.py", "--a-tasks", "2000", "--b-tasks", "20", "--json"],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    fifo, fair = results["fifo"], results["fair"]
    assert fifo["runs"] == fifo["distinct"] == fair["runs"] == fair["distinct"] == 2020
    # FIFO: B starts after A's backlog; fair: B finishes while most of A still waits.
    assert fifo["b_p95"] > 0.5 * fifo["a_drain"], fifo
    assert fair["b_done"] < 0.25 * fair["a_drain"], fair
    assert fair["b_p95"] * 5 < fifo["b_p95"], results
