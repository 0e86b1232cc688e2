"""Bulk enqueue: message format on a real broker, real workers running the tasks,
the HTTP endpoint through gunicorn, and worker events after the events bootstep."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import requests
from django.db import transaction


from queueworks.dispatch.services import (
    _Confirms,
    _MessageBuilder,
    _task_headers,
    _publish_confirmed,
    tasks_enqueue_bulk,
    tasks_enqueue_bulk_on_commit,
)
from tests.support import rabbit
from tests.support.live import wait_for

# Celery's protocol 2 (docs: internals/protocol): headers every message carries.
REQUIRED_HEADERS = {"lang", "task", "id", "root_id", "parent_id", "group"}


def test_headers_leave_out_only_optional_ones_whose_absence_means_the_same(monkeypatch):
    from apps.testing.tasks import noop
    from projectname.celery import app

    headers = _task_headers(app, noop, "tid", args=(), kwargs={"n": 1})
    assert REQUIRED_HEADERS <= set(headers)
    assert headers["id"] == headers["root_id"] == "tid"
    assert headers["kwargsrepr"] == "{'n': 1}" and headers["argsrepr"] == "()"
    assert headers["ignore_result"] is True
    for optional in ("eta", "expires", "retries", "timelimit", "shadow", "group_index",
                     "replaced_task_nesting", "stamped_headers", "stamps"):
        assert optional not in headers
    # Any value other than the default is sent.
    monkeypatch.setattr(noop, "time_limit", 7)
    monkeypatch.setattr(noop, "soft_time_limit", 5)
    limited = _task_headers(app, noop, "tid", args=(), kwargs={}, extra={"retries": 2})
    assert list(limited["timelimit"]) == [7, 5]
    assert limited["retries"] == 2


def test_confirm_tracker_settles_single_multiple_and_nacked_tags():
    confirms = _Confirms(6)
    ack, nack = confirms._on(1), confirms._on(2)
    ack(2, False)
    ack(3, True)       # settles 1 and 3 (2 already)
    nack(5, False)
    assert confirms.settled == 4
    assert confirms.tags(0) == [4, 6]
    ack(6, True)       # settles 4 and 6, keeps 5 nacked
    assert confirms.settled == 6
    assert confirms.tags(2) == [5]
    assert confirms.tags(1) == [1, 2, 3, 4, 6]


@pytest.mark.live
def test_bulk_messages_are_persistent_celery_protocol_2_on_the_durable_queue():
    """Built and published exactly as the service does, in a vhost nobody consumes."""
    import amqp

    from queueworks.core.tasks import probe
    from projectname.celery import app
    from projectname.topology import TOPOLOGY

    vhost = rabbit.create_vhost("dispatch")
    try:
        host = rabbit.AMQP_HOSTPORT
        conn = amqp.Connection(host=host, userid=rabbit.AUTH[0], password=rabbit.AUTH[1],
                               virtual_host=vhost)
        conn.connect()
        declared = next(q for q in TOPOLOGY.queues if q.name == "main_worker")
        conn.channel().queue_declare("main_worker", durable=True, auto_delete=False,
                                     arguments=declared.arguments())
        build = _MessageBuilder(app, probe, 7)
        task_ids = [str(uuid.uuid4()) for _ in range(3)]
        messages = [build(task_id, {"token": f"t{i}"}) for i, task_id in enumerate(task_ids)]
        _publish_confirmed(conn, messages, count=len(messages), routing_key="main_worker",
                           task_ids=task_ids, confirm_timeout=30)
        info = wait_for(lambda: (lambda q: q if q.get("messages") == 3 else None)(
            rabbit.queue_info(vhost, "main_worker")), 30, message="3 messages in main_worker")
        assert info["durable"] is True
        assert info["arguments"]["x-max-priority"] == 9
        channel = conn.channel()
        for index, task_id in enumerate(task_ids):
            message = channel.basic_get("main_worker", no_ack=True)
            props = message.properties
            assert props["delivery_mode"] == 2
            assert props["priority"] == 7
            assert props["correlation_id"] == task_id
            assert props["content_type"] == "application/json"
            headers = props["application_headers"]
            assert headers["task"] == "queueworks.core.tasks.probe"
            assert headers["id"] == headers["root_id"] == task_id
            assert headers["kwargsrepr"] == repr({"token": f"t{index}"})
            args, kwargs, embed = json.loads(message.body)
            assert (args, kwargs) == ([], {"token": f"t{index}"})
            assert embed is None  # no callbacks, errbacks, chain or chord
        conn.close()
    finally:
        rabbit.delete_vhost(vhost)


def _probe_rows(tokens):
    from queueworks.core.models import ProbeRun

    rows = list(ProbeRun.objects.filter(token__in=tokens, finished_at__isnull=False))
    return rows if len(rows) == len(tokens) else None


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_bulk_enqueued_tasks_run_on_the_routed_worker(live_system):
    from queueworks.core.tasks import probe

    tokens = [f"bulk-{uuid.uuid4().hex[:8]}-{i}" for i in range(40)]
    result = tasks_enqueue_bulk(task=probe, kwargs_list=[{"token": t} for t in tokens])
    assert result.queue == "main_worker"
    assert len(set(result.task_ids)) == 40
    rows = wait_for(lambda: _probe_rows(tokens), 60, interval=0.5, message="40 probes ran")
    assert {row.queue for row in rows} == {"main_worker"}
    assert {row.hostname for row in rows} == {live_system.node("main_worker")}
    assert all(row.deliveries == 1 for row in rows)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_bulk_on_commit_publishes_only_committed_batches(live_system):
    from queueworks.core.models import ProbeRun
    from queueworks.core.tasks import probe

    rolled_back = [f"rb-{uuid.uuid4().hex[:8]}-{i}" for i in range(5)]
    committed = [f"ok-{uuid.uuid4().hex[:8]}-{i}" for i in range(5)]

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        tasks_enqueue_bulk_on_commit(task=probe, kwargs_list=[{"token": t} for t in rolled_back])
        raise Rollback
    with transaction.atomic():
        ids = tasks_enqueue_bulk_on_commit(task="queueworks.core.tasks.probe",
                                           kwargs_list=[{"token": t} for t in committed])
    assert len(ids) == 5
    # Same queue, published later: once these ran, the rolled-back ones would have too.
    wait_for(lambda: _probe_rows(committed), 60, interval=0.5, message="committed batch ran")
    assert not ProbeRun.objects.filter(token__in=rolled_back).exists()


def _api_user(username: str, *, operator: bool):
    from django.contrib.auth.models import Group, Permission, User
    from queueworks.apitokens.services import api_token_create

    user = User.objects.create_user(username)
    if operator:
        group, _ = Group.objects.get_or_create(name="task operators")
        group.permissions.add(Permission.objects.get(
            content_type__app_label="taskapi", codename="operate_tasks"))
        user.groups.add(group)
    return {"Authorization": f"Token {api_token_create(user=user, name='tests')[1]}"}


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_bulk_http_endpoint_starts_tasks_and_refuses_bad_items(live_system):
    base = f"http://127.0.0.1:{live_system.web_port}/api/v1"
    operator = _api_user(f"bulk-op-{uuid.uuid4().hex[:6]}", operator=True)
    reader = _api_user(f"bulk-rd-{uuid.uuid4().hex[:6]}", operator=False)
    tokens = [f"http-{uuid.uuid4().hex[:8]}-{i}" for i in range(10)]
    body = {"task": "queueworks.core.tasks.probe", "kwargs_list": [{"token": t} for t in tokens]}

    response = requests.post(f"{base}/tasks/bulk/", json=body, headers=operator, timeout=30)
    assert response.status_code == 202, response.text
    data = response.json()
    assert data["count"] == 10 and data["queue"] == "main_worker"
    assert response.headers["Server-Timing"].startswith("enqueue;dur=")
    wait_for(lambda: _probe_rows(tokens), 60, interval=0.5, message="HTTP bulk probes ran")
    detail = wait_for(lambda: (lambda r: r if r.json().get("state") == "SUCCESS" else None)(
        requests.get(f"{base}/tasks/{data['task_ids'][0]}/", headers=operator, timeout=30)),
        60, interval=0.5, message="task detail SUCCESS")
    assert detail.json()["task_id"] == data["task_ids"][0]

    bad = {"task": "queueworks.core.tasks.probe", "kwargs_list": [{"token": "ok"}, {"nope": 1}]}
    response = requests.post(f"{base}/tasks/bulk/", json=bad, headers=operator, timeout=30)
    assert response.status_code == 400
    assert "kwargs_list[1]" in response.json()["errors"]

    unknown = {"task": "os.system", "kwargs_list": [{}]}
    response = requests.post(f"{base}/tasks/bulk/", json=unknown, headers=operator, timeout=30)
    assert response.status_code == 400 and "task" in response.json()["errors"]

    response = requests.post(f"{base}/tasks/bulk/", json=body, headers=reader, timeout=30)
    assert response.status_code == 403


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_worker_still_sends_task_events_without_confirms(live_system):
    """The events bootstep only drops confirms: Flower and /ops/ still see every task."""
    from queueworks.core.tasks import probe
    from projectname.celery import app

    token = f"ev-{uuid.uuid4().hex[:8]}"
    task_id = str(uuid.uuid4())
    seen: dict[str, set] = {"types": set()}
    ready = threading.Event()

    bound = threading.Event()

    def on_event(event):
        bound.set()  # any event (workers send heartbeats every 2 s): the queue is bound
        if event.get("uuid") == task_id:
            seen["types"].add(event["type"])

    def listen():
        with app.connection_for_read() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": on_event})
            ready.set()
            for _ in receiver.itercapture(limit=None, timeout=60, wakeup=False):
                if "task-succeeded" in seen["types"]:
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(30)
    # Its queue is bound once itercapture consumes: wait for a first event.
    assert bound.wait(60), "the event receiver saw no event (not even a worker heartbeat)"
    tasks_enqueue_bulk(task=probe, kwargs_list=[{"token": token}], task_ids=[task_id])
    thread.join(60)
    assert {"task-received", "task-started", "task-succeeded"} <= seen["types"], seen


def test_confirm_tracker_counts_tags_after_earlier_batches():
    confirms = _Confirms(3, base=10)
    confirms._on(1)(9, True)    # an earlier batch's tags: ignored
    assert confirms.settled == 0
    confirms._on(1)(12, True)
    confirms._on(2)(13, False)
    assert confirms.tags(1) == [1, 2] and confirms.tags(2) == [3]


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [
    ({}, "task"),
    ({"task": "queueworks.core.tasks.probe"}, "kwargs_list"),
    ({"task": "queueworks.core.tasks.probe", "kwargs_list": []}, "kwargs_list"),
    ({"task": "queueworks.core.tasks.probe", "kwargs_list": "x"}, "kwargs_list"),
    ({"task": "queueworks.core.tasks.probe", "kwargs_list": ["x"]}, "kwargs_list"),
    ({"task": "queueworks.core.tasks.probe", "kwargs_list": [{"token": "a"}] * 1001}, "kwargs_list"),
    ({"task": "queueworks.core.tasks.probe", "kwargs_list": [{"token": "a"}], "priority": 10}, "priority"),
    ({"task": "queueworks.core.tasks.probe", "kwargs_list": [{"token": 5}]}, "kwargs_list[0]"),
    ({"task": 7, "kwargs_list": [{}]}, "task"),
])
def test_bulk_http_refuses_malformed_bodies_naming_the_field(body, field):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=_api_user("bulk-val", operator=True)["Authorization"])
    response = client.post("/api/v1/tasks/bulk/", body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert any(key == field or key.startswith(f"{field}.") or key.startswith(f"{field}[")
               for key in errors), errors


@pytest.mark.django_db
def test_bulk_http_needs_authentication():
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/tasks/bulk/", {"task": "x", "kwargs_list": [{}]},
                                format="json")
    assert response.status_code == 401
