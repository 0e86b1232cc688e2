"""Several processes share one limit through the database, on SQLite (the
development default) and on PostgreSQL: the limit holds across all of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.limits_contention_probe import RATE, RUNNING
from tests.support.postgres import throwaway_database

ROOT = Path(__file__).resolve().parents[3]
SECONDS = 3.0
PROCESSES = 4


@contextmanager
def sqlite_database(tmp_path):
    yield f"sqlite:///{tmp_path / 'limits.sqlite3'}"


def probe(url: str, mode: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", "tests.support.limits_contention_probe", url, mode,
         str(PROCESSES), str(SECONDS)],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    opened = sqlite_database(tmp_path) if request.param == "sqlite" else throwaway_database()
    with opened as url:
        yield url


def test_a_rate_limit_holds_across_processes(database_url):
    report = probe(database_url, "rate")
    assert report["most_in_a_window"] <= RATE["starts"] + RATE["burst"], report
    assert report["refused"] > 0, report  # the limit was binding: processes were turned away
    assert all(count > 0 for count in report["per_process"]), report
    # Used, not just respected: about the declared rate over the run (within
    # 5 % on an idle machine; a late wake-up of a refused process is lost
    # beyond the burst, so a loaded one gets less).
    expected = RATE["starts"] / RATE["per_seconds"] * report["span"]
    assert report["starts"] >= 0.75 * expected, report


def test_a_concurrency_limit_holds_across_processes(database_url):
    report = probe(database_url, "concurrency")
    assert report["most_running"] <= RUNNING, report
    assert report["refused"] > 0, report  # four processes wanted more than three slots
    assert report["most_running"] >= 2 and report["runs"] > 20, report
