"""A start whose message the broker does not take in time is accepted: its
committed record stays in the outbox, the answer says it is not published
yet, and the outbox relays it (the web process's publisher as soon as the
broker answers, else the sweeper).  Through a real web server whose broker
cannot be reached, the session's broker and its workers."""

import uuid
from pathlib import Path

import pytest
from django_celery_results.models import TaskResult

from tests.queueworks.taskapi.conftest import Http, _make_user, web_server
from tests.support import rabbit
from tests.support.latency_proxy import LatencyProxy
from tests.support.live import free_port, wait_for

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PROBE = "queueworks.core.tasks.probe"
UNIQUE = "apps.testing.tasks.unique_job"


def _env_with_broker_at(live_system, port: int) -> dict[str, str]:
    """The live system's settings, its vhost and user, through ``port`` on this host."""
    user, password = live_system.broker_url.split("//", 1)[1].split("@", 1)[0].split(":", 1)
    return {**live_system.env,
            "CELERY_BROKER_URL": f"pyamqp://{user}:{password}@127.0.0.1:{port}/{live_system.vhost}"}


def _deferred_start(api: Http, payload: dict) -> dict:
    response = api.post("/api/v1/tasks/", payload)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["published"] is False and body["state"] == "PENDING", body
    return body


def _record(task_id: str):
    from queueworks.taskapi.models import TaskRecord

    return TaskRecord.objects.get(task_id=task_id)


def _deferred_count(task_name: str) -> float:
    from queueworks.metrics import names
    from queueworks.metrics.models import TaskTotal

    row = TaskTotal.objects.filter(task_name=task_name, key=names.OUTBOX_DEFERRED_KEY).first()
    return row.value if row else 0.0


def _runs(token: str) -> int:
    from queueworks.core.models import ProbeRun

    run = ProbeRun.objects.filter(token=token).first()
    return run.deliveries if run else 0


def test_a_start_the_broker_does_not_take_is_accepted_and_the_sweeper_runs_it(live_system):
    """Nothing ever listens on the web server's broker port: the start is
    202 with ``"published": false``, the record waits unconfirmed, and the
    outbox sweep (here called at once) publishes it; it runs exactly once."""
    from queueworks.taskapi.outbox import outbox_sweep

    token = f"deferred-{uuid.uuid4().hex[:12]}"
    counted = _deferred_count(PROBE)
    env = _env_with_broker_at(live_system, free_port())
    with web_server(env) as base:
        ticket = _deferred_start(Http(base, _make_user("deferred-operator", operator=True)),
                                 {"task": PROBE, "kwargs": {"token": token}})
        log = (Path(env["RUN_DIR"]) / f"taskapi-web-{base.rsplit(':', 1)[1]}.log").read_text(
            errors="replace")
    task_id = ticket["task_id"]
    assert _record(task_id).confirmed_at is None
    assert TaskResult.objects.get(task_id=task_id).status == "PENDING"
    assert any(task_id in line and "stays in the outbox" in line for line in log.splitlines()), \
        log[-3000:]
    assert _deferred_count(PROBE) == counted + 1

    assert outbox_sweep(older_than=0).republished >= 1
    wait_for(lambda: TaskResult.objects.get(task_id=task_id).status == "SUCCESS", 60,
             message="the relayed probe's SUCCESS")
    assert _record(task_id).confirmed_at is not None
    assert _runs(token) == 1


def test_the_web_process_publishes_a_deferred_start_once_the_broker_answers(live_system):
    """The broker is unreachable when the start is accepted and reachable a
    moment later: the web process's publisher sends the kept message on its
    own, long before any sweep would, and the task runs once."""
    host, port = rabbit.AMQP_HOSTPORT.rsplit(":", 1)
    proxy_port = free_port()
    token = f"kept-{uuid.uuid4().hex[:12]}"
    with web_server(_env_with_broker_at(live_system, proxy_port)) as base:
        ticket = _deferred_start(Http(base, _make_user("kept-operator", operator=True)),
                                 {"task": PROBE, "kwargs": {"token": token}})
        proxy = LatencyProxy((host, int(port)), delay=0, port=proxy_port)
        try:
            wait_for(lambda: TaskResult.objects.get(task_id=ticket["task_id"]).status
                     == "SUCCESS", 40, message="the kept probe's SUCCESS, with no sweep")
            wait_for(lambda: _record(ticket["task_id"]).confirmed_at is not None, 20,
                     message="the kept message's confirm marked on its record")
        finally:
            proxy.close()
    assert _runs(token) == 1


def test_a_deferred_unique_start_keeps_its_claim_until_it_runs(live_system):
    """The unique task's claim was written with its record: while the record
    waits in the outbox the key is held (a second start is its duplicate),
    and the relayed task runs once and frees it."""
    from queueworks.limits.models import UniqueClaim
    from queueworks.taskapi.outbox import outbox_sweep

    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    payload = {"task": UNIQUE, "kwargs": {"tenant_id": tenant, "run_id": "deferred"}}
    with web_server(_env_with_broker_at(live_system, free_port())) as base:
        api = Http(base, _make_user("unique-deferred-operator", operator=True))
        ticket = _deferred_start(api, payload)
        again = api.post("/api/v1/tasks/", payload)
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True and again.json()["task_id"] == ticket["task_id"]
    assert UniqueClaim.objects.filter(task_id=ticket["task_id"]).exists()

    assert outbox_sweep(older_than=0).republished >= 1
    wait_for(lambda: TaskResult.objects.get(task_id=ticket["task_id"]).status == "SUCCESS", 60,
             message="the relayed unique task's SUCCESS")
    wait_for(lambda: not UniqueClaim.objects.filter(task_id=ticket["task_id"]).exists(), 20,
             message="the claim freed when the task ended")
    from apps.testing.services import fault_executions_count

    assert fault_executions_count(run_id="deferred", token=tenant) == 1
