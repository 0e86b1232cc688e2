"""Operating the real programs with supervisorctl, as the README describes."""

import uuid

import pytest

from queueworks.core.models import ProbeRun
from queueworks.core.tasks import heavy_probe, probe
from projectname.topology import TOPOLOGY
from tests.support.broker import queued_task_ids
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_every_program_is_running(live_system):
    states = live_system.states()
    expected = {w.name for w in TOPOLOGY.workers} | {"alerts", "beat", "flower", "web"}
    assert set(states) == expected
    assert set(states.values()) == {"RUNNING"}
    status = live_system.ctl("status")
    assert status.returncode == 0
    assert status.stdout.count("RUNNING") == len(expected)


def test_stop_start_one_worker_while_the_other_keeps_serving(live_system):
    try:
        assert live_system.ctl("stop", "main_worker").returncode == 0
        assert live_system.states()["main_worker"] == "STOPPED"
        # heavy keeps serving while main_worker is down ...
        assert heavy_probe.delay(uuid.uuid4().hex, 0).get(timeout=30)["hostname"] == \
            live_system.node("heavy_worker")
        # ... and main_worker's work waits in its queue rather than being lost.
        waiting = probe.delay(uuid.uuid4().hex)
        # Beat adds its own messages to that queue too: look for this one.
        wait_for(lambda: waiting.id in queued_task_ids(live_system.vhost, "main_worker"), 30,
                 message=f"probe {waiting.id} waiting in main_worker's queue")
        assert waiting.state == "PENDING"
    finally:
        assert live_system.ctl("start", "main_worker").returncode == 0
        live_system.wait_workers_ready(["main_worker"])
    assert waiting.get(timeout=30)["hostname"] == live_system.node("main_worker")


def test_restart_one_worker(live_system):
    before = live_system.rpc().getProcessInfo("heavy_worker")["pid"]
    try:
        assert live_system.ctl("restart", "heavy_worker").returncode == 0
    finally:
        live_system.wait_running(["heavy_worker"])
        live_system.wait_workers_ready(["heavy_worker"])
    assert live_system.rpc().getProcessInfo("heavy_worker")["pid"] != before
    assert probe.delay(uuid.uuid4().hex).get(timeout=30)["hostname"] == live_system.node("main_worker")
    assert heavy_probe.delay(uuid.uuid4().hex, 0).get(timeout=30)["hostname"] == \
        live_system.node("heavy_worker")


def test_stopping_a_worker_mid_task_loses_nothing(live_system):
    token = uuid.uuid4().hex
    result = heavy_probe.delay(token, 4)
    wait_for(lambda: ProbeRun.objects.filter(token=token).exists(), 30, message="task started")
    try:
        # supervisorctl stop sends TERM: Celery's warm shutdown finishes the task first.
        assert live_system.ctl("stop", "heavy_worker").returncode == 0
        run = ProbeRun.objects.get(token=token)
        assert run.finished_at is not None, "warm shutdown must let the running task finish"
    finally:
        live_system.ctl("start", "heavy_worker")
        live_system.wait_workers_ready(["heavy_worker"])
    assert result.get(timeout=30)["token"] == token
    assert ProbeRun.objects.get(token=token).deliveries == 1


def test_reread_and_update_see_no_drift_in_the_committed_files(live_system):
    reread = live_system.ctl("reread")
    assert reread.returncode == 0 and "No config updates" in reread.stdout
    update = live_system.ctl("update")
    assert update.returncode == 0
    assert set(live_system.states().values()) == {"RUNNING"}
