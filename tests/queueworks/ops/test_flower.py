"""Flower of the live system: Basic auth, the seed's task-apply flow, queue lengths."""

import json
import uuid

import pytest
import requests

from queueworks.core.models import ProbeRun
from projectname.topology import TOPOLOGY
from tests.support.live import FLOWER_AUTH, wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _url(live_system, path):
    return f"http://127.0.0.1:{live_system.flower_port}{path}"


def test_unauthenticated_requests_are_refused(live_system):
    assert requests.get(_url(live_system, "/"), timeout=10).status_code == 401
    assert requests.get(_url(live_system, "/api/workers"), timeout=10).status_code == 401
    response = requests.post(_url(live_system, "/api/task/apply/queueworks.core.tasks.probe"),
                             json={"args": ["nope"]}, timeout=10)
    assert response.status_code == 401
    wrong = requests.get(_url(live_system, "/api/workers"), auth=(FLOWER_AUTH[0], "wrong"), timeout=10)
    assert wrong.status_code == 401


def test_the_seed_apply_flow_runs_the_task_on_its_queues_worker(live_system):
    # curl -u user:pass -X POST http://127.0.0.1:<port>/api/task/apply/<task name> \
    #      -H 'content-type: application/json' -d '{"args":[...]}'
    token = uuid.uuid4().hex
    response = requests.post(
        _url(live_system, "/api/task/apply/queueworks.core.tasks.probe"), auth=FLOWER_AUTH,
        headers={"content-type": "application/json"}, data=json.dumps({"args": [token]}),
        timeout=90,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"task-id", "state", "result"}
    assert body["state"] == "SUCCESS"
    assert body["result"] == {"token": token, "hostname": live_system.node("main_worker"),
                              "queue": "main_worker"}
    assert ProbeRun.objects.get(token=token).deliveries == 1


def test_flower_reads_queue_lengths_from_the_management_api(live_system):
    def queue_names():
        # Flower learns each worker's queues from its own `inspect` rounds; a
        # worker busy with another test may miss one, so ask it to refresh.
        requests.get(_url(live_system, "/api/workers?refresh=1"), auth=FLOWER_AUTH, timeout=30)
        response = requests.get(_url(live_system, "/api/queues/length"), auth=FLOWER_AUTH,
                                timeout=30)
        assert response.status_code == 200, response.text
        names = {queue["name"] for queue in response.json()["active_queues"]}
        return names if set(TOPOLOGY.queue_names()) <= names else None

    assert wait_for(queue_names, 60, interval=2, message="every topology queue in Flower")


# -- Flower lets nobody past the Task API's allowlist (queueworks/core/flower.py) ----------
def test_an_operator_starts_an_allowlisted_task_with_async_apply(live_system):
    # curl -u user:pass -X POST http://127.0.0.1:<port>/api/task/async-apply/queueworks.core.tasks.probe \
    #      -H 'content-type: application/json' -d '{"args":["<token>"]}'
    token = uuid.uuid4().hex
    response = requests.post(_url(live_system, "/api/task/async-apply/queueworks.core.tasks.probe"),
                             auth=FLOWER_AUTH, json={"args": [token]}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["task-id"]
    assert wait_for(lambda: ProbeRun.objects.filter(token=token).exists(), 60,
                    message="the probe started through Flower ran")


@pytest.mark.parametrize("task", [
    "apps.testing.tasks.fault_crash",                    # test-only, registered here
    "queueworks.reliability.tasks.dispatch_delayed_tasks",     # registered, not allowlisted
    "celery.backend_cleanup",
])
def test_tasks_off_the_allowlist_are_refused_and_never_sent(live_system, task):
    for endpoint in ("apply", "async-apply", "send-task"):
        response = requests.post(_url(live_system, f"/api/task/{endpoint}/{task}"),
                                 auth=FLOWER_AUTH, json={"args": ["run", "token"]}, timeout=30)
        assert response.status_code == 403, (endpoint, response.text)
        assert "allowlist" in response.json()["task"][0]


def test_start_requests_are_checked_like_the_task_apis(live_system):
    url = _url(live_system, "/api/task/async-apply/queueworks.core.tasks.probe")
    wrong_type = requests.post(url, auth=FLOWER_AUTH, json={"args": [42]}, timeout=30)
    assert wrong_type.status_code == 400 and "token" in wrong_type.json()["args"][0]
    other_queue = requests.post(url, auth=FLOWER_AUTH, json={"args": ["x"], "queue": "bulk"}, timeout=30)
    assert other_queue.status_code == 400 and "queue" in other_queue.json()
    routing = requests.post(url, auth=FLOWER_AUTH, json={"args": ["x"], "exchange": "amq.direct"},
                            timeout=30)
    assert routing.status_code == 400 and "exchange" in routing.json()


def test_anonymous_and_wrong_password_cannot_start_anything(live_system):
    url = _url(live_system, "/api/task/async-apply/queueworks.core.tasks.probe")
    assert requests.post(url, json={"args": ["x"]}, timeout=10).status_code == 401
    assert requests.post(url, json={"args": ["x"]}, auth=(FLOWER_AUTH[0], "wrong"),
                         timeout=10).status_code == 401


def test_worker_control_and_revoke_are_refused_and_the_worker_keeps_running(live_system):
    node = live_system.node("main_worker")
    for path in (f"/api/worker/shutdown/{node}", f"/api/worker/pool/restart/{node}",
                 f"/api/worker/pool/shrink/{node}", f"/api/task/revoke/{uuid.uuid4()}?terminate=true"):
        response = requests.post(_url(live_system, path), auth=FLOWER_AUTH, timeout=30)
        assert response.status_code == 403, (path, response.text)
        assert "Task API" in response.json()["detail"]
        anonymous = requests.post(_url(live_system, path), timeout=30)
        assert anonymous.status_code == 401, path
    assert live_system.states()["main_worker"] == "RUNNING"
    from projectname.celery import app

    assert node in (app.control.ping(destination=[node], timeout=2.0) or [{}])[0]
