"""Hours under faults: rounds of Task API starts against a whole running system.

    .venv/bin/python bench/soak.py --database sqlite --minutes 30
    .venv/bin/python bench/soak.py --database postgres --minutes 30 --json soak-pg.json
    .venv/bin/python bench/soak.py --rounds 2 --starts 100           # the suite's size

The system is the one `make run` starts: supervisord from the committed
deploy/conf.d files, every program (web, Flower, beat, alerts, the workers),
on a private RabbitMQ vhost and a fresh database (a SQLite file, or a
throw-away PostgreSQL database from TEST_POSTGRES_URL).  A user in "task
operators" holds a token; the Task API throttles are raised (as an operator
raises them in .env) so that every refusal is a fault, not a limit.

Each round: ``--starts`` ``POST /api/v1/tasks/`` (``queueworks.core.tasks.probe``)
from ``--clients`` threads, while every broker connection of the vhost is
closed every ``--close-every`` seconds and one gunicorn worker is SIGKILLed
every ``--kill-every`` seconds.  Then the faults stop and every accepted id is
polled (``GET /api/v1/tasks/<id>/``) until SUCCESS, ``--poll-timeout``
seconds at most; then each program's RSS, its children included, is read.
Accepted-but-unconfirmed starts are published again by the system's own
outbox sweeper (beat), as in production: the bench sweeps nothing itself.

Per round: accepted (202), of them unpublished (``"published": false``: the
broker did not take the message in time, the outbox relayed it), succeeded,
not succeeded (accepted, not SUCCESS in time), 5xx answers (to starts and
polls) by status and JSON ``code``, unanswered starts (connection
cut by a killed web worker: never accepted), the accept latency, the time
until the last SUCCESS, and the RSS per program.  The verdict: 0 not
succeeded, 0 5xx, and each program's RSS at the end within 10 % of its
round-3 figure (with fewer than 4 rounds, of the round before the last).
``--keep`` keeps the run directory (every program's log) for inspection.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from bench import common  # noqa: E402
from bench.soak_faults import Faults  # noqa: E402
from bench.soak_report import HEADER, ok, report, row_line, rss_verdict  # noqa: E402,F401

PROBE = "queueworks.core.tasks.probe"
# Raised as an operator raises them in .env (TASKAPI_THROTTLE_*): the soak
# measures faults, not the per-user limits.
RAISED_THROTTLES = {"TASKAPI_THROTTLE_START": "1000000/min",
                    "TASKAPI_THROTTLE_BULK": "1000000/min",
                    "TASKAPI_THROTTLE_READS": "1000000/min"}


@dataclass
class Round:
    number: int
    accepted: int = 0
    succeeded: int = 0
    not_succeeded: int = 0
    server_errors: int = 0
    # Each 5xx by its status and JSON ``code`` ("503 broker_unavailable"; "no JSON"
    # when the body is not the API's error): to starts and polls alike.
    server_error_codes: dict = field(default_factory=dict)
    # Accepted with "published": false: the broker did not take the message in
    # time, the outbox relayed it (docs/acceptance.md).
    unpublished: int = 0
    unanswered: int = 0
    other_answers: dict = field(default_factory=dict)
    accept_p50_ms: float = 0.0
    accept_p99_ms: float = 0.0
    starts_per_second: float = 0.0
    settle_seconds: float = 0.0
    connections_closed: int = 0
    web_workers_killed: int = 0
    rss_mb: dict = field(default_factory=dict)
    load: str = ""


def server_error_key(response) -> str:
    """A 5xx answer's status and the ``code`` of its JSON body."""
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        code = None
    return f"{response.status_code} {code or 'no JSON'}"


def count_server_error(row: Round, response) -> None:
    key = server_error_key(response)
    row.server_errors += 1
    row.server_error_codes[key] = row.server_error_codes.get(key, 0) + 1


# -- the clients ----------------------------------------------------------------------------
class Client:
    def __init__(self, base: str, token: str):
        self.base = base
        self.headers = {"Authorization": f"Token {token}"}
        self.lock = threading.Lock()

    def start_all(self, count: int, clients: int, row: Round) -> tuple[list[str], list[float]]:
        import requests

        todo = list(range(count))
        accepted: list[str] = []
        latencies: list[float] = []

        def work():
            session = requests.Session()
            while True:
                with self.lock:
                    if not todo:
                        return
                    todo.pop()
                token = f"soak-{uuid.uuid4().hex}"
                started = time.perf_counter()
                try:
                    response = session.post(self.base + "/api/v1/tasks/", headers=self.headers,
                                            json={"task": PROBE, "kwargs": {"token": token}},
                                            timeout=60)
                except requests.RequestException:
                    with self.lock:
                        row.unanswered += 1
                    session = requests.Session()
                    continue
                took = (time.perf_counter() - started) * 1000
                with self.lock:
                    if response.status_code == 202:
                        body = response.json()
                        accepted.append(body["task_id"])
                        latencies.append(took)
                        row.unpublished += body.get("published") is False
                    elif response.status_code >= 500:
                        count_server_error(row, response)
                    else:
                        key = str(response.status_code)
                        row.other_answers[key] = row.other_answers.get(key, 0) + 1

        threads = [threading.Thread(target=work) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return accepted, latencies

    def poll_until_success(self, task_ids: list[str], clients: int, timeout: float,
                           row: Round) -> set[str]:
        """Ids still not SUCCESS after ``timeout`` seconds (polled over and over)."""
        import requests

        pending = set(task_ids)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            batch = list(pending)
            done: set[str] = set()

            def work(ids):
                session = requests.Session()
                for task_id in ids:
                    try:
                        response = session.get(f"{self.base}/api/v1/tasks/{task_id}/",
                                               headers=self.headers, timeout=30)
                    except requests.RequestException:
                        session = requests.Session()
                        continue
                    with self.lock:
                        if response.status_code >= 500:
                            count_server_error(row, response)
                        elif response.status_code == 200 and \
                                response.json().get("state") == "SUCCESS":
                            done.add(task_id)

            threads = [threading.Thread(target=work, args=(batch[i::clients],))
                       for i in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            pending -= done
            if pending:
                time.sleep(1.0)
        return pending


# -- the system -----------------------------------------------------------------------------
def program_rss_mb(system) -> dict[str, float]:
    """RSS of each supervisor program's process tree, in MB."""
    sizes = {}
    for info in system.rpc().getAllProcessInfo():
        pid = int(info["pid"])
        if pid:
            sizes[info["name"]] = sum(common.rss_bytes(p) for p in common.tree(pid)) / 2**20
    return dict(sorted(sizes.items()))


@contextlib.contextmanager
def database(kind: str, work_dir: Path):
    if kind == "sqlite":
        yield f"sqlite:///{work_dir / 'soak.sqlite3'}"
        return
    from tests.support import postgres

    if postgres.admin_url() is None:
        raise SystemExit("error: --database postgres needs TEST_POSTGRES_URL (in .env: "
                         "deploy/bin/ensure-system.sh --test writes it)")
    with postgres.throwaway_database() as url:
        yield url


def setup_django(database_url: str) -> str:
    """Migrate the fresh database, as `make run` does; a task operator's token."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
    os.environ.setdefault("DJANGO_PROFILE", "development")
    os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
    os.environ.setdefault("DJANGO_SECRET_KEY", "soak-only-" + "x" * 50)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0, interactive=False)
    token = common.operator_token("soak")
    connections.close_all()
    return token


def build_system(work_dir: Path, vhost: str, database_url: str):
    from tests.support import rabbit
    from tests.support.live import LiveSystem, build_env, free_port

    run_dir = work_dir / "system"
    (run_dir / "log").mkdir(parents=True)
    web_port, flower_port = free_port(), free_port()
    broker_url = rabbit.broker_url(vhost)
    env = build_env(run_dir=run_dir, broker_url=broker_url, database_url=database_url,
                    web_port=web_port, flower_port=flower_port)
    env.update(RAISED_THROTTLES)
    return LiveSystem(run_dir=run_dir, vhost=vhost, broker_url=broker_url,
                      database_url=database_url, env=env, web_port=web_port,
                      flower_port=flower_port)


# -- one run --------------------------------------------------------------------------------
def soak(system, token: str, *, rounds: int | None, minutes: float | None, starts: int,
         clients: int, close_every: float, kill_every: float, poll_timeout: float,
         log=print) -> list[Round]:
    client = Client(f"http://127.0.0.1:{system.web_port}", token)
    deadline = time.monotonic() + minutes * 60 if minutes else None
    results: list[Round] = []
    while True:
        if rounds is not None and len(results) >= rounds:
            break
        if deadline is not None and time.monotonic() >= deadline and \
                (rounds is not None or len(results) >= 1):
            break
        row = Round(number=len(results) + 1)
        began = time.monotonic()
        with Faults(system, close_every=close_every, kill_every=kill_every) as faults:
            accepted, latencies = client.start_all(starts, clients, row)
        sent_for = time.monotonic() - began
        row.connections_closed, row.web_workers_killed = faults.closed, faults.killed
        row.accepted = len(accepted)
        if latencies:
            row.accept_p50_ms = statistics.median(latencies)
            row.accept_p99_ms = common.percentile(latencies, 99)
        row.starts_per_second = row.accepted / sent_for if sent_for else 0.0
        # The web program must serve the polls: a worker killed last comes back.
        system.wait_running(["web"], timeout=120)
        settle = time.monotonic()
        missing = client.poll_until_success(accepted, clients, poll_timeout, row)
        row.settle_seconds = time.monotonic() - settle
        row.succeeded = row.accepted - len(missing)
        row.not_succeeded = len(missing)
        row.rss_mb = program_rss_mb(system)
        row.load = common.loadavg()
        results.append(row)
        log(row_line(row), flush=True)
        if missing:
            log(f"  not SUCCESS after {poll_timeout:.0f}s: {sorted(missing)[:10]}", flush=True)
    return results


@contextlib.contextmanager
def run_directory(kind: str, *, keep: bool):
    """A fresh directory for the run; removed after it unless ``keep``."""
    if keep:
        yield tempfile.mkdtemp(prefix=f"soak-{kind}-")
        return
    with tempfile.TemporaryDirectory(prefix=f"soak-{kind}-") as tmp:
        yield tmp


def _stop_on_signal(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, help="stop after this many rounds")
    parser.add_argument("--minutes", type=float,
                        help="stop after the round that ends past this many minutes")
    parser.add_argument("--starts", type=int, default=1500, help="starts per round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--close-every", type=float, default=0.5)
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--poll-timeout", type=float, default=240.0)
    parser.add_argument("--json", type=Path, help="also write the rounds here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run directory (every program's log, supervisord's, "
                             "the SQLite file) and print its path")
    args = parser.parse_args(argv)
    if args.rounds is None and args.minutes is None:
        parser.error("give --rounds, --minutes or both")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.minutes is not None and args.minutes <= 0:
        parser.error("--minutes must be positive")
    common.bounded(args.starts)
    if not 1 <= args.clients <= 64:
        parser.error("--clients must be between 1 and 64")
    if args.close_every <= 0 or args.kill_every <= 0 or args.poll_timeout <= 0:
        parser.error("--close-every, --kill-every and --poll-timeout must be positive")

    from tests.support import rabbit

    # Stopped by a signal (nohup'd runs ignore SIGINT), it still stops the
    # system, drops the vhost and the throw-away database.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    began = time.monotonic()
    with run_directory(args.database, keep=args.keep) as tmp, \
            database(args.database, Path(tmp)) as database_url, \
            common.throwaway_vhost(f"soak-{args.database}") as vhost:
        token = setup_django(database_url)
        from projectname.celery import app

        # The system's start waits for every worker to answer on this vhost.
        rabbit.point_app_at(app, vhost)
        system = build_system(Path(tmp), vhost, database_url)
        print(f"starting the system ({args.database}, vhost {vhost}, run dir {tmp}) ...",
              flush=True)
        try:
            system.start()
            print(HEADER, flush=True)
            results = soak(system, token, rounds=args.rounds, minutes=args.minutes,
                           starts=args.starts, clients=args.clients,
                           close_every=args.close_every, kill_every=args.kill_every,
                           poll_timeout=args.poll_timeout)
        finally:
            system.stop()
    text = report(results, database_kind=args.database, started=started,
                  minutes=(time.monotonic() - began) / 60, args=args)
    print()
    print(text)
    if args.keep:
        print(f"Run directory kept: {tmp} (program logs in {Path(tmp) / 'system' / 'log'})")
    if args.json:
        args.json.write_text(json.dumps({"database": args.database, "started": started,
                                         "rounds": [asdict(r) for r in results],
                                         "report": text}, indent=1))
    return 0 if ok(results) else 1


if __name__ == "__main__":
    sys.exit(main())
