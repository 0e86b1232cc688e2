"""`manage.py liveness`: consumer counts per queue from RabbitMQ, and a restart
of a worker that is RUNNING but no longer consuming."""

import json
import subprocess
import sys

import pytest

from projectname.celery import app
from projectname.topology import TOPOLOGY
from tests.support.live import PROJECT_ROOT, wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def liveness(live_system, *args):
    return subprocess.run(
        [sys.executable, "manage.py", "liveness", *args], cwd=PROJECT_ROOT,
        env=live_system.env, capture_output=True, text=True, timeout=120,
    )


def test_all_queues_have_their_consumers(live_system):
    result = liveness(live_system, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = {row["queue"]: row for row in json.loads(result.stdout)}
    assert set(report) == set(TOPOLOGY.queue_names())
    assert all(row["ok"] and row["consumers"] >= 1 for row in report.values())


def test_a_running_worker_that_stopped_consuming_is_detected_and_restarted(live_system):
    node = live_system.node("main_worker")
    pid_before = live_system.rpc().getProcessInfo("main_worker")["pid"]
    # The failure mode: the process is alive (ping answers, supervisor says
    # RUNNING) but it has no consumer on its queues any more.
    for queue in ("main_worker", "celery"):
        app.control.cancel_consumer(queue, destination=[node], reply=True, timeout=5)
    try:
        wait_for(lambda: liveness(live_system).returncode == 1, 30, message="liveness failing")
        assert app.control.ping(destination=[node], timeout=2)  # ping alone says "fine"

        # supervisord is found through RUN_DIR, as in every program it runs.
        result = liveness(live_system, "--restart", "--grace", "0")
        assert result.returncode == 1
        assert "main_worker" in result.stdout and "MISSING" in result.stdout
        assert "main_worker: restarted" in result.stderr
    finally:
        live_system.wait_running(["main_worker"], timeout=120)
        live_system.wait_workers_ready(["main_worker"], timeout=120)
    assert live_system.rpc().getProcessInfo("main_worker")["pid"] != pid_before
    assert liveness(live_system).returncode == 0


def test_uptime_is_read_from_supervisord_process_info():
    from apps.reliability.management.commands.liveness import uptime_seconds

    assert uptime_seconds({"statename": "RUNNING", "start": 1000, "now": 1312}) == 312
    assert uptime_seconds({"statename": "STOPPED", "start": 1000, "now": 1312}) is None
    assert uptime_seconds({"statename": "RUNNING", "start": 0, "now": 1312}) is None
