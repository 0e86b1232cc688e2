"""PostgreSQL for the tests: a throw-away database for one test, and the
PostgreSQL pass (``QUEUEWORKS_TEST_DATABASE=postgres pytest -m postgres``).

``TEST_POSTGRES_URL`` (the environment or .env) names a role that may create
databases; ``deploy/bin/ensure-system.sh --test`` installs PostgreSQL, creates
that role and its database, and writes the URL to .env.  Each test gets a
database of its own, dropped afterwards.  Missing PostgreSQL skips locally
and fails under CI=true (tests/support/requirements.py).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.support.requirements import require

ROOT = Path(__file__).resolve().parents[2]
SETTING = "TEST_POSTGRES_URL"

DATABASES = ("sqlite", "postgres")
# An environment variable, not a pytest option: the test settings, which load
# before any pytest hook, and every program the live system starts must make
# the same choice (as QUEUEWORKS_TEST_BROKER, tests/support/rabbitmq4.py).
TEST_DATABASE = os.environ.get("QUEUEWORKS_TEST_DATABASE") or "sqlite"
if TEST_DATABASE not in DATABASES:
    raise SystemExit(f"QUEUEWORKS_TEST_DATABASE must be one of {DATABASES}, not {TEST_DATABASE!r}")


def admin_url() -> str | None:
    if os.environ.get(SETTING):
        return os.environ[SETTING]
    env_file = ROOT / ".env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith(f"{SETTING}="):
                return line.split("=", 1)[1].strip() or None
    return None


def _reachable(url: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5):
            return None
    except psycopg.Error as exc:
        return str(exc).strip()


@contextmanager
def throwaway_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped when the block ends."""
    import psycopg

    url = admin_url()
    require(url is not None, f"{SETTING} is not set (deploy/bin/ensure-system.sh --test writes "
                             "it to .env)")
    error = _reachable(url)
    require(error is None, f"PostgreSQL at {SETTING} is not reachable: {error} "
                           "(deploy/bin/ensure-system.sh --test installs and starts it)")
    name = f"qw_test_{secrets.token_hex(5)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def apply_test_database(environ=os.environ) -> None:
    """On the PostgreSQL pass the suite's database is PostgreSQL: the role of
    TEST_POSTGRES_URL, which pytest-django creates the test database with (the
    live system's programs get that database's URL, tests/conftest.py).
    Without the URL the settings stay on SQLite and ``require_test_database``
    skips (fails under CI) the session's database tests."""
    if TEST_DATABASE == "postgres" and admin_url():
        environ["DATABASE_URL"] = admin_url()


def require_test_database() -> None:
    """On the PostgreSQL pass, PostgreSQL must be there (skip locally, fail under CI)."""
    if TEST_DATABASE != "postgres":
        return
    url = admin_url()
    require(url is not None, f"the PostgreSQL pass needs {SETTING} (deploy/bin/ensure-system.sh "
                             "--test writes it to .env)")
    error = _reachable(url)
    require(error is None, f"PostgreSQL at {SETTING} is not reachable: {error} "
                           "(deploy/bin/ensure-system.sh --test installs and starts it)")


def retry_flush_on_deadlock(attempts: int = 5) -> None:
    """A transactional test's flush (``TRUNCATE`` of every table) retries
    when PostgreSQL aborts it as a deadlock victim.

    The live system's programs write on while a test ends (beat's sweeps, a
    worker's result): ``TRUNCATE`` takes its exclusive locks table by table,
    and a worker's transaction holding one table while writing another
    closes the cycle.  PostgreSQL aborts one of the two; the worker retries
    its own write (queueworks/core/results_backend.py), the flush here."""
    import time

    from django.db import OperationalError
    from django.db.backends.postgresql.operations import DatabaseOperations

    flush = DatabaseOperations.execute_sql_flush
    if getattr(flush, "retries_deadlocks", False):
        return

    def execute_sql_flush(self, sql_list):
        for attempt in range(attempts):
            try:
                return flush(self, sql_list)
            except OperationalError as exc:
                if "deadlock detected" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    execute_sql_flush.retries_deadlocks = True
    DatabaseOperations.execute_sql_flush = execute_sql_flush


def end_other_sessions(connection) -> None:
    """Close every other session on ``connection``'s database (this process's
    idle threads' connections, a program that outlived the live system), so
    the test database can be dropped at the end of the session."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
