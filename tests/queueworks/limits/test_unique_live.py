"""Unique tasks through the real web server, broker and worker: one run per
key while it is held, the key free again after the run, and a pool process
SIGKILLed in the middle of the run: its redelivered message keeps the key
(no second task is accepted) and the key is free once it ends."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from tests.queueworks.taskapi.conftest import _make_user
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TASK = "apps.testing.tasks.unique_job"


@pytest.fixture
def api(live_http):
    return live_http(_make_user("unique-operator", operator=True))


def _post(api, tenant: str, run_id: str, seconds: float) -> tuple[int, dict]:
    response = api.post("/api/v1/tasks/", {"task": TASK, "kwargs": {
        "tenant_id": tenant, "run_id": run_id, "seconds": seconds}})
    assert response.status_code in (200, 202), response.text
    return response.status_code, response.json()


def _executions(run_id: str) -> list:
    from apps.testing.models import FaultExecution

    return list(FaultExecution.objects.filter(run_id=run_id).order_by("executed_at"))


def _claim(task_id: str):
    from queueworks.limits.models import UniqueClaim

    return UniqueClaim.objects.filter(task_id=task_id).first()


def test_a_unique_task_runs_once_per_held_key_and_frees_it_after_the_run(api, live_system):
    run_id, tenant = uuid.uuid4().hex, f"acme-{uuid.uuid4().hex[:6]}"
    status, first = _post(api, tenant, run_id, 2)
    assert status == 202 and "duplicate" not in first
    for _ in range(5):
        status, again = _post(api, tenant, run_id, 0)
        assert status == 200 and again["duplicate"] is True
        assert again["task_id"] == first["task_id"]
    done = api.wait_state(first["task_id"], {"SUCCESS", "FAILURE"}, timeout=60)
    assert done["state"] == "SUCCESS", done
    wait_for(lambda: _claim(first["task_id"]) is None, 10, message="the claim freed")
    assert len(_executions(run_id)) == 1
    status, later = _post(api, tenant, run_id, 0)
    assert status == 202 and later["task_id"] != first["task_id"]
    assert api.wait_state(later["task_id"], {"SUCCESS", "FAILURE"}, timeout=60)["state"] \
        == "SUCCESS"
    assert len(_executions(run_id)) == 2


def test_a_sigkilled_run_keeps_its_key_through_redelivery_and_frees_it_at_the_end(
        api, live_system):
    from queueworks.limits.models import UniqueClaim
    from queueworks.taskapi.models import TaskRecord

    run_id, tenant = uuid.uuid4().hex, f"kill-{uuid.uuid4().hex[:6]}"
    status, first = _post(api, tenant, run_id, 4)
    assert status == 202
    wait_for(lambda: _executions(run_id), 30, message="the run started")
    held = _claim(first["task_id"])
    assert held.state == UniqueClaim.RUNNING
    # The running lease: the route's lease_seconds (15), from the start.
    assert (held.expires_at - _executions(run_id)[0].executed_at).total_seconds() <= 15.5
    os.kill(_executions(run_id)[0].pid, signal.SIGKILL)
    # While the message is redelivered and runs again, the key stays held.
    status, again = _post(api, tenant, run_id, 0)
    assert status == 200 and again["task_id"] == first["task_id"]
    done = api.wait_state(first["task_id"], {"SUCCESS", "FAILURE"}, timeout=90)
    assert done["state"] == "SUCCESS", done
    wait_for(lambda: _claim(first["task_id"]) is None, 10, message="the claim freed")
    runs = _executions(run_id)
    assert len(runs) == 2 and runs[0].pid != runs[1].pid  # the killed run and its redelivery
    # Only one task was ever accepted for the key.
    assert TaskRecord.objects.filter(task_name=TASK, kwargs__tenant_id=tenant).count() == 1
    status, later = _post(api, tenant, run_id, 0)
    assert status == 202 and later["task_id"] != first["task_id"]


def test_a_key_whose_run_was_sigkilled_and_never_redelivered_is_free_after_its_lease(
        api, live_system):
    """Acked on receipt: the killed run is not delivered again, nothing ends
    it, so only the lease (10 s from the start) frees the key."""
    import time

    task = "apps.testing.tasks.unique_job_early_ack"
    run_id, tenant = uuid.uuid4().hex, f"lease-{uuid.uuid4().hex[:6]}"
    body = {"task": task, "kwargs": {"tenant_id": tenant, "run_id": run_id, "seconds": 6}}
    first = api.post("/api/v1/tasks/", body)
    assert first.status_code == 202, first.text
    wait_for(lambda: _executions(run_id), 30, message="the run started")
    started = _executions(run_id)[0].executed_at
    os.kill(_executions(run_id)[0].pid, signal.SIGKILL)
    # Until the lease ends, the key is held by the dead run.
    again = api.post("/api/v1/tasks/", {**body, "kwargs": {**body["kwargs"], "seconds": 0}})
    assert again.status_code == 200 and again.json()["task_id"] == first.json()["task_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        later = api.post("/api/v1/tasks/", {**body, "kwargs": {**body["kwargs"], "seconds": 0}})
        if later.status_code == 202:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the key was not freed within 30 s")
    from django.utils import timezone

    freed_after = (timezone.now() - started).total_seconds()
    assert 9 <= freed_after <= 10 + 3, freed_after  # the 10 s lease, give or take a poll
    assert api.wait_state(later.json()["task_id"], {"SUCCESS", "FAILURE"}, timeout=60)["state"] \
        == "SUCCESS"
    # The killed run never ran again: two executions, the killed one and the new task's.
    time.sleep(2)
    assert len(_executions(run_id)) == 2


def test_a_run_killed_at_its_hard_time_limit_frees_its_key_at_once(api, live_system):
    """unique_job's route: hard limit 10 s, lease 15 s.  A run stuck in C code
    (deaf to the soft limit and to SIGTERM) is SIGKILLed at 10 s by
    main_worker's prefork pool, so none of its own code runs again; the main
    process's ``task_failure`` frees the key then: a new call is accepted
    before the lease would have ended."""
    from django.utils import timezone

    run_id, tenant = uuid.uuid4().hex, f"limit-{uuid.uuid4().hex[:6]}"
    response = api.post("/api/v1/tasks/", {"task": TASK, "kwargs": {
        "tenant_id": tenant, "run_id": run_id, "seconds": 18, "stuck": True}})
    assert response.status_code == 202, response.text
    first = response.json()
    wait_for(lambda: _executions(run_id), 30, message="the run started")
    started = _executions(run_id)[0].executed_at
    done = api.wait_state(first["task_id"], {"SUCCESS", "FAILURE"}, timeout=60)
    assert done["state"] == "FAILURE", done
    assert done["error"]["type"] == "TimeLimitExceeded" and done["error"]["message"] == "10", done
    wait_for(lambda: _claim(first["task_id"]) is None, 10, interval=0.1,
             message="the claim freed")
    freed_after = (timezone.now() - started).total_seconds()
    assert freed_after < 14, freed_after  # before the 15 s lease
    status, later = _post(api, tenant, run_id, 0)
    assert status == 202 and later["task_id"] != first["task_id"]
    assert api.wait_state(later["task_id"], {"SUCCESS", "FAILURE"}, timeout=60)["state"] \
        == "SUCCESS"
