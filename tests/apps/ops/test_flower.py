"""Flower of the live system: Basic auth, the seed's task-apply flow, queue lengths."""

import json
import uuid

import pytest
import requests

from apps.core.models import ProbeRun
from projectname.topology import TOPOLOGY
from tests.support.live import FLOWER_AUTH, wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _url(live_system, path):
    return f"http://127.0.0.1:{live_system.flower_port}{path}"


def test_unauthenticated_requests_are_refused(live_system):
    assert requests.get(_url(live_system, "/"), timeout=10).status_code == 401
    assert requests.get(_url(live_system, "/api/workers"), timeout=10).status_code == 401
    response = requests.post(_url(live_system, "/api/task/apply/apps.core.tasks.probe"),
                             json={"args": ["nope"]}, timeout=10)
    assert response.status_code == 401
    wrong = requests.get(_url(live_system, "/api/workers"), auth=(FLOWER_AUTH[0], "wrong"), timeout=10)
    assert wrong.status_code == 401


def test_the_seed_apply_flow_runs_the_task_on_its_queues_worker(live_system):
    # curl -u user:pass -X POST http://127.0.0.1:<port>/api/task/apply/<task name> \
    #      -H 'content-type: application/json' -d '{"args":[...]}'
    token = uuid.uuid4().hex
    response = requests.post(
        _url(live_system, "/api/task/apply/apps.core.tasks.probe"), auth=FLOWER_AUTH,
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
