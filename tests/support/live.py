"""A real system for tests: supervisord from the committed deploy/conf.d files,
real worker processes, a private RabbitMQ vhost and the test database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from queueworks.core.runtime import supervisor_environment
from tests.support import rabbit
from queueworks.core.supervisor import render_supervisord_conf
from projectname.topology import TOPOLOGY

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FLOWER_AUTH = ("flower-test", "flower-test-password")
# What the live system's web server accepts from a Prometheus scraper at /metrics.
METRICS_AUTH = ("prometheus-test", "metrics-test-password")
# Seconds for every program to run and every worker to consume.  Bounded,
# yet long enough for a loaded 2-core machine, where starting Django and
# Celery in seven programs at once took 5 minutes at a load average of 50.
START_TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {message}")


@dataclass
class LiveSystem:
    run_dir: Path
    vhost: str
    broker_url: str
    database_url: str
    env: dict[str, str]
    web_port: int
    flower_port: int
    process: subprocess.Popen | None = None
    conf: Path = field(init=False)

    def __post_init__(self):
        self.conf = self.run_dir / "supervisord.conf"

    # -- supervisor ----------------------------------------------------------
    def start(self) -> None:
        self.conf.write_text(render_supervisord_conf(
            run_dir=str(self.run_dir), include=str(PROJECT_ROOT / "deploy" / "conf.d" / "*.conf"),
        ))
        self.process = subprocess.Popen(
            [self.bin("supervisord"), "--nodaemon", "-c", str(self.conf)],
            env=self.env, cwd=PROJECT_ROOT,
            stdout=open(self.run_dir / "supervisord.out", "ab"), stderr=subprocess.STDOUT,
        )
        wait_for(lambda: (self.run_dir / "supervisor.sock").exists(), 20, message="supervisor socket")
        self.wait_running(self.program_names(), timeout=START_TIMEOUT)
        self.wait_workers_ready([worker.name for worker in TOPOLOGY.workers], timeout=START_TIMEOUT)

    def stop(self, timeout: float = 120) -> None:
        """supervisord stops its programs; one that will not stop in time
        (a worker starved of CPU on a loaded host, a long warm shutdown) is
        killed with supervisord and every process under it: supervisor puts
        each program in a process group of its own, so killing supervisord
        alone would leave them running, connected to nothing."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            stop_process_tree(self.process, timeout)

    @staticmethod
    def bin(name: str) -> str:
        return str(Path(sys.executable).parent / name)

    def rpc(self):
        transport = SupervisorTransport(None, None, f"unix://{self.run_dir}/supervisor.sock")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def ctl(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.bin("supervisorctl"), "-c", str(self.conf), *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )

    def program_names(self) -> list[str]:
        return [info["name"] for info in self.rpc().getAllProcessInfo()]

    def states(self) -> dict[str, str]:
        return {info["name"]: info["statename"] for info in self.rpc().getAllProcessInfo()}

    def wait_running(self, names, timeout: float = START_TIMEOUT) -> None:
        def all_running():
            states = self.states()
            failed = [n for n in names if states.get(n) in ("FATAL", "BACKOFF", "EXITED")]
            if failed:
                logs = {n: self.log_tail(n) for n in failed}
                raise RuntimeError(f"programs failed to start: {failed}\n{logs}")
            return all(states.get(n) == "RUNNING" for n in names)

        wait_for(all_running, timeout, interval=0.5, message=f"RUNNING {names}")

    def log_tail(self, program: str, lines: int = 40) -> str:
        path = self.run_dir / "log" / f"{program}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- celery --------------------------------------------------------------
    def node(self, worker_name: str) -> str:
        return f"{worker_name}@{socket.gethostname()}"

    def inspect(self, command: str, *, timeout: float = 5.0) -> dict:
        """`celery -A projectname inspect <command> --json`, as an operator runs it."""
        result = subprocess.run(
            [self.bin("celery"), "-A", "projectname", "inspect", command, "--json",
             f"--timeout={timeout}"],
            env=self.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout + 30,
        )
        if result.returncode != 0 or not result.stdout.strip():
            return {}
        return json.loads(result.stdout.strip().splitlines()[-1])

    def wait_workers_ready(self, worker_names, timeout: float = START_TIMEOUT) -> None:
        from projectname.celery import app

        expected = {self.node(name) for name in worker_names}
        seen: set[str] = set()

        def consuming():
            # A loaded worker may miss one broadcast's timeout: a node counts
            # once it has answered with its queues, and only the others are
            # asked again.
            waiting = sorted(expected - seen)
            replies = app.control.inspect(destination=waiting, timeout=3.0).active_queues() or {}
            seen.update(node for node, queues in replies.items() if queues)
            return expected <= seen

        try:
            wait_for(consuming, timeout, interval=0.5, message="workers consuming")
        except TimeoutError as error:
            raise TimeoutError(f"{error}: no answer with queues from {sorted(expected - seen)} "
                               f"(answered: {sorted(seen)})") from None


@contextlib.contextmanager
def serving(command: list[str], *, env: dict[str, str], log_path: Path, url: str,
            timeout: float, message: str, auth=None):
    """Run ``command`` (a server) until the block ends; yields once ``url`` answers 200."""
    import requests

    log = open(log_path, "ab")
    process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log,
                               stderr=subprocess.STDOUT)

    def up():
        if process.poll() is not None:
            raise RuntimeError(f"{message}: the server exited with {process.returncode}")
        try:
            return requests.get(url, auth=auth, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout, interval=0.3, message=message)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def stop_process_tree(process: subprocess.Popen, timeout: float) -> None:
    """Wait for ``process`` (already asked to stop) to exit; after ``timeout``
    seconds kill it and every process under it, children first."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        from bench.common import tree

        for pid in reversed(tree(process.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()


def build_env(*, run_dir: Path, broker_url: str, database_url: str, web_port: int,
              flower_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(supervisor_environment(project_root=PROJECT_ROOT, run_dir=run_dir))
    env.update({
        "WEB_PORT": str(web_port),
        "FLOWER_PORT": str(flower_port),
        "CELERY_BROKER_URL": broker_url,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "projectname.settings",
        # The development profile with production-like programs: DEBUG off (it
        # also keeps every SQL query in memory), and the test-only tasks
        # (apps/testing) installed, which the production profile refuses.
        "DJANGO_PROFILE": "development",
        "DJANGO_TEST_SUPPORT": "1",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": env.get("DJANGO_SECRET_KEY", "test-only-secret-key"),
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(run_dir / "mail"),
        "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
        "METRICS_USERNAME": METRICS_AUTH[0],
        "METRICS_PASSWORD": METRICS_AUTH[1],
        # The monitoring user reads the management API (/ops/, Flower, doctor).
        "RABBITMQ_MANAGEMENT_USER": rabbit.MONITOR_AUTH[0],
        "RABBITMQ_MANAGEMENT_PASSWORD": rabbit.MONITOR_AUTH[1],
        # The alerts program evaluates every 10 s, not every minute: alert tests
        # wait for its e-mails.
        "OPS_ALERTS_INTERVAL_SECONDS": "10",
        # Django's task signals, as the workers send them (apps/testing/signals.py).
        "DJANGO_TASK_SIGNALS_LOG": str(run_dir / "django-task-signals.log"),
    })
    return env
