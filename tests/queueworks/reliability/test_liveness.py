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


def test_liveness_restarts_only_the_programs_declared_on_its_host(live_system):
    """With an inventory, a stuck program is restarted by the liveness run of
    the host that runs it; another host's run names that host and leaves it."""
    env = dict(live_system.env, DEPLOY_INVENTORY="tests.support.host_inventory:SPLIT")

    def run(*args):
        return subprocess.run([sys.executable, "manage.py", "liveness", *args], cwd=PROJECT_ROOT,
                              env=env, capture_output=True, text=True, timeout=120)

    report = {row["queue"]: row for row in json.loads(run("--json").stdout)}
    # One host runs main_worker, two programs consume bulk: counted from the inventory.
    assert report["main_worker"]["expected"] == 1 and report["bulk"]["expected"] == 2
    node = live_system.node("main_worker")
    pid_before = live_system.rpc().getProcessInfo("main_worker")["pid"]
    for queue in ("main_worker", "celery"):
        app.control.cancel_consumer(queue, destination=[node], reply=True, timeout=5)
    try:
        wait_for(lambda: run().returncode == 1, 30, message="liveness failing")
        elsewhere = run("--restart", "--grace", "0", "--host", "here")
        assert "main_worker: runs on there, not here; not restarting here" in elsewhere.stderr
        assert live_system.rpc().getProcessInfo("main_worker")["pid"] == pid_before
        assert "needs --host" in run("--restart").stderr
        owner = run("--restart", "--grace", "0", "--host", "there")
        assert "main_worker: restarted" in owner.stderr, owner.stderr
    finally:
        live_system.wait_running(["main_worker"], timeout=120)
        live_system.wait_workers_ready(["main_worker"], timeout=120)
    assert live_system.rpc().getProcessInfo("main_worker")["pid"] != pid_before


def test_expected_consumers_follow_the_inventory():
    from queueworks.reliability.liveness import expected_consumers
    from projectname.inventory import THREE_HOSTS

    assert expected_consumers(["main_worker"], hosts=3) == 3
    assert expected_consumers(["main_worker"], hosts=1, inventory=THREE_HOSTS) == 1
    assert expected_consumers(["bulk_worker_1", "bulk_worker_2"], hosts=1, inventory=THREE_HOSTS) == 2


def test_uptime_is_read_from_supervisord_process_info():
    from queueworks.reliability.management.commands.liveness import uptime_seconds

    assert uptime_seconds({"statename": "RUNNING", "start": 1000, "now": 1312}) == 312
    assert uptime_seconds({"statename": "STOPPED", "start": 1000, "now": 1312}) is None
    assert uptime_seconds({"statename": "RUNNING", "start": 0, "now": 1312}) is None
