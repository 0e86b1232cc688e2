"""Flower's memory after N tasks: its RSS with a given --max-tasks.

Starts Flower the way the project runs it (``manage.py run_flower``, persistent
state) in a throw-away vhost, publishes the task events a worker sends with
events on (received, started, succeeded: Celery's own event dispatcher) for
N tasks, waits until Flower has seen the last one, and reads its RSS.  Then
restarts Flower on the state it saved and reads the RSS again (the saved
state is loaded back).

    .venv/bin/python bench/flower_memory.py --tasks 100000 --max-tasks 10000 100000

prints one table row per --max-tasks value.  The suite runs it small
(tests/bench/test_flower_memory.py); docs/operations.md has the full table.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PROJECT_ROOT, bounded, throwaway_vhost  # noqa: E402
from tests.support import rabbit  # noqa: E402

AUTH = ("bench", "bench-password")
MIB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MIB
    return 0.0


class Flower:
    def __init__(self, broker_url: str, run_dir: Path, max_tasks: int):
        self.port = _free_port()
        env = {**os.environ, "CELERY_BROKER_URL": broker_url, "RUN_DIR": str(run_dir),
               "FLOWER_BASIC_AUTH": ":".join(AUTH), "DJANGO_SETTINGS_MODULE": "tests.settings"}
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_flower", f"--port={self.port}",
             f"--max-tasks={max_tasks}"],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait(lambda: requests.get(f"{self.url}/api/workers", auth=AUTH, timeout=5,
                                        params={"refresh": "false"}).ok, 60, "Flower to answer")

    def knows(self, task_id: str) -> bool:
        answer = requests.get(f"{self.url}/api/task/info/{task_id}", auth=AUTH, timeout=10)
        return answer.ok and answer.json().get("state") == "SUCCESS"

    def wait_for(self, task_id: str, timeout: float) -> None:
        self._wait(lambda: self.knows(task_id), timeout, f"Flower to see task {task_id}")

    def _wait(self, check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Flower exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                if check():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"waited {timeout:.0f} s for {what}")

    def tasks_kept(self) -> int:
        answer = requests.get(f"{self.url}/api/tasks", auth=AUTH, timeout=60)
        answer.raise_for_status()
        return len(answer.json())

    def rss(self) -> float:
        return rss_mib(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def publish_events(broker_url: str, tasks: int) -> str:
    """Send each task's received/started/succeeded events; the last task's id."""
    from celery import Celery

    # Not the current app: the project's shared tasks must keep resolving to
    # the project's app (and its task class) in the process that calls this.
    app = Celery("bench", broker=broker_url, set_as_current=False)
    hostname = "main_worker@bench"
    task_id = ""
    with app.connection_for_write() as connection:
        dispatcher = app.events.Dispatcher(connection, hostname=hostname, enabled=True,
                                           buffer_while_offline=False)
        dispatcher.send("worker-online", freq=2.0, sw_ident="py-celery", sw_ver="5",
                        sw_sys="Linux")
        for number in range(tasks):
            task_id = str(uuid.uuid4())
            dispatcher.send("task-received", uuid=task_id, name="apps.core.tasks.probe",
                            args=f"[{number}, 'payload-{number}']", kwargs="{'tenant': 'acme'}",
                            root_id=task_id, parent_id=None, retries=0, eta=None,
                            expires=None)
            dispatcher.send("task-started", uuid=task_id)
            dispatcher.send("task-succeeded", uuid=task_id, result=f"{{'ok': {number}}}",
                            runtime=0.004)
        dispatcher.close()
    return task_id


def measure(broker_url: str, tasks: int, max_tasks: int, *, timeout: float = 600,
            count_tasks: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="flower-bench-") as run_dir:
        flower = Flower(broker_url, Path(run_dir), max_tasks)
        try:
            time.sleep(2)  # its event consumer is subscribed
            start = flower.rss()
            started = time.monotonic()
            last = publish_events(broker_url, tasks)
            flower.wait_for(last, timeout)
            seconds = time.monotonic() - started
            after = flower.rss()
            kept = flower.tasks_kept() if count_tasks else None
        finally:
            flower.stop()
        flower = Flower(broker_url, Path(run_dir), max_tasks)
        try:
            flower.wait_for(last, 120)
            restarted = flower.rss()
            kept_after_restart = flower.tasks_kept() if count_tasks else None
        finally:
            flower.stop()
    return {"tasks": tasks, "max_tasks": max_tasks, "rss_start_mib": round(start, 1),
            "rss_after_mib": round(after, 1), "rss_restarted_mib": round(restarted, 1),
            "seconds": round(seconds, 1), "tasks_kept": kept,
            "tasks_kept_after_restart": kept_after_restart}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("max_tasks", type=int, nargs="+", help="Flower --max-tasks values")
    options = parser.parse_args()
    tasks = bounded(options.tasks)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    print("| tasks | --max-tasks | RSS at start (MiB) | RSS after (MiB) | RSS after restart (MiB) "
          "| seconds |")
    print("|---:|---:|---:|---:|---:|---:|")
    with throwaway_vhost("flower") as vhost:
        for max_tasks in options.max_tasks:
            row = measure(rabbit.broker_url(vhost), tasks, max_tasks)
            print(f"| {row['tasks']} | {row['max_tasks']} | {row['rss_start_mib']} | "
                  f"{row['rss_after_mib']} | {row['rss_restarted_mib']} | {row['seconds']} |",
                  flush=True)


if __name__ == "__main__":
    main()
