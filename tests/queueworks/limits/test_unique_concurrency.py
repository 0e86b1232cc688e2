"""1,000 concurrent enqueues over 10 unique keys from 4 processes produce
exactly 10 tasks (10 publishes, every caller told one of those 10 ids), on
SQLite (the development default) and on PostgreSQL (production)."""

import json
import os
import subprocess
import sys
from pathlib import Path


from tests.support.postgres import throwaway_database

ROOT = Path(__file__).resolve().parents[3]
PROCESSES, CALLS, KEYS = 4, 250, 10


def _probe(url: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", "tests.support.unique_probe", url, str(PROCESSES), str(CALLS),
         str(KEYS)],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _assert_exactly_one_task_per_key(report: dict) -> None:
    assert report["exit_codes"] == [0] * PROCESSES, report
    assert report["published"] == KEYS, report
    assert report["distinct_published"] == KEYS, report
    assert report["distinct_returned"] == KEYS, report
    assert report["returned_unpublished"] == 0, report
    assert report["records"] == KEYS and report["claims"] == KEYS, report
    assert report["duplicates"] == PROCESSES * CALLS - KEYS, report


def test_concurrent_enqueues_on_sqlite_make_one_task_per_key(tmp_path):
    _assert_exactly_one_task_per_key(_probe(f"sqlite:///{tmp_path / 'unique.sqlite3'}"))


def test_concurrent_enqueues_on_postgresql_make_one_task_per_key():
    with throwaway_database() as url:
        _assert_exactly_one_task_per_key(_probe(url))
