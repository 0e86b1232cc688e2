"""The Task API served by extra gunicorn processes: one whose broker is
unreachable (a start is accepted promptly and left to the outbox, reads that
need the broker are a prompt 503), and one on a worker-less vhost
that schemathesis fuzzes from /api/schema/ (no 5xx) and where refused requests
can be seen to publish nothing."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.queueworks.taskapi.conftest import Http, _make_user, row_counts, web_server
from tests.queueworks.taskapi.test_requests import BAD_STARTS
from tests.support import rabbit
from tests.support.broker import declare_topology_queues, queue_depth
from tests.support.live import PROJECT_ROOT, free_port, wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DIAGNOSE = "queueworks.taskapi.tasks.diagnose"
# Requests the broker cannot serve must come back well within this (connect
# timeout 2 s, one quick retry), never hang until the client gives up.
PROMPT_SECONDS = 10
FUZZ_EXAMPLES = int(os.environ.get("TASKAPI_FUZZ_EXAMPLES", "15"))
FUZZ_SEED = os.environ.get("TASKAPI_FUZZ_SEED", "20261123")


@pytest.fixture(scope="module")
def fuzz_vhost():
    vhost = rabbit.create_vhost("taskapi-fuzz")
    yield vhost
    rabbit.delete_vhost(vhost)


@pytest.fixture(scope="module")
def workerless_server(live_system, fuzz_vhost):
    """The API on a vhost no worker consumes: what it publishes stays there."""
    env = {**live_system.env, "CELERY_BROKER_URL": rabbit.broker_url(fuzz_vhost),
           # The fuzz runs measure input handling, not the request rates.
           **{f"TASKAPI_THROTTLE_{scope}": "100000/min"
              for scope in ("READS", "START", "BULK", "ANON")}}
    with web_server(env) as base:
        yield base


def _timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@pytest.mark.parametrize("broker", ["closed port", "silent listener"])
def test_unreachable_broker_accepts_starts_promptly_and_answers_reads_503(live_system, broker):
    with socket.socket() as silent:
        if broker == "closed port":
            port = free_port()  # nothing listens there
        else:
            # Accepts TCP connections (backlog) but never speaks AMQP.
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)
            port = silent.getsockname()[1]
        env = {**live_system.env,
               "CELERY_BROKER_URL": f"pyamqp://nobody:unreachable@127.0.0.1:{port}//"}
        operator = _make_user("down-operator", operator=True)
        before = row_counts()
        with web_server(env) as base:
            api = Http(base, operator)
            response, took = _timed(lambda: api.post(
                "/api/v1/tasks/", {"task": DIAGNOSE, "kwargs": {"message": "left to the outbox"}}))
            # The record was committed before the publish: accepted, not published.
            assert response.status_code == 202, response.text
            assert response.json()["published"] is False, response.text
            assert took < PROMPT_SECONDS, took
            response, took = _timed(lambda: api.get("/api/v1/queues/"))
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "broker_unavailable"
            assert took < PROMPT_SECONDS, took
            # Workers come from the snapshot all web processes share (refreshed
            # in the background): the last one, labelled with its age, or a
            # 503 when there is none yet; promptly either way.
            response, took = _timed(lambda: api.get("/api/v1/workers/"))
            assert took < PROMPT_SECONDS, took
            if response.status_code == 200:
                assert "Age" in response.headers, response.headers
            else:
                assert response.status_code == 503, response.text
                assert response.json()["code"] == "broker_unavailable"
            # Reads that need no broker still work.
            assert api.get("/api/v1/tasks/").status_code == 200
        # The accepted start is recorded (PENDING, unconfirmed), nothing else.
        assert row_counts() == (before[0] + 1, before[1] + 1)


def _messages_in(vhost: str, queues: list[str]) -> int:
    """Ready messages in every topology queue of ``vhost``, exact (passive declare)."""
    return sum(queue_depth(vhost, queue) or 0 for queue in queues)


def test_refused_requests_publish_nothing(workerless_server, fuzz_vhost):
    queues = declare_topology_queues(fuzz_vhost)  # whatever is published there stays
    operator = _make_user("refused-operator", operator=True)
    api = Http(workerless_server, operator)
    start = _messages_in(fuzz_vhost, queues)
    for payload, field in BAD_STARTS:
        response = api.post("/api/v1/tasks/", payload)
        assert response.status_code == 400 and field in response.json()["errors"], (
            payload, response.text)
    assert api.post("/api/v1/tasks/", data=b"{not json",
                    headers={"Content-Type": "application/json"}).status_code == 400
    reader = Http(workerless_server, _make_user("refused-reader"))
    assert reader.post("/api/v1/tasks/", {"task": DIAGNOSE}).status_code == 403
    # Control: an accepted request lands in a queue.  Anything a refused
    # request had published was sent before it.
    assert api.post("/api/v1/tasks/", {"task": DIAGNOSE}).status_code == 202
    total = wait_for(lambda: (lambda n: n if n > start else None)(_messages_in(fuzz_vhost, queues)),
                     30, message="the accepted request's message in a queue")
    assert total == start + 1, f"{total - start} messages published; refused requests published"


# The fuzz run's roles: who each is (None: anonymous, no token).
FUZZ_ROLES = {
    "anonymous": None,
    "plain": {"groups": ()},
    "viewer": {"groups": ("task viewers",)},
    "operator": {"groups": ("task operators",)},
    "staff": {"groups": (), "staff": True},
}


def _fuzz_token(role: str) -> str | None:
    from django.contrib.auth.models import Group, User
    from queueworks.apitokens.services import api_token_create

    spec = FUZZ_ROLES[role]
    if spec is None:
        return None
    user = User.objects.create_user(f"fuzz-{role}", is_staff=spec.get("staff", False))
    user.groups.add(*Group.objects.filter(name__in=spec["groups"]))
    return api_token_create(user=user, name="fuzz")[1]


@pytest.mark.parametrize("role", FUZZ_ROLES)
def test_schemathesis_every_check_for_each_role(workerless_server, tmp_path, role):
    """Every check: no 5xx, responses as documented, schema-valid requests
    accepted (or refused only for the role's lack of permission), and no
    schema-violating request accepted.  TASKAPI_FUZZ_EXAMPLES=100 for the
    full run (the default keeps the suite short)."""
    token = _fuzz_token(role)
    schemathesis = str(Path(sys.executable).parent / "schemathesis")
    # The schema is readable by an authenticated user only: the anonymous run
    # loads it with a token, then sends its requests without one.
    loader = token or _fuzz_token("plain")
    command = [
        schemathesis, "run", f"{workerless_server}/api/schema/",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(FUZZ_EXAMPLES), "--seed", FUZZ_SEED,
        "--workers", "1", "--request-timeout", "30",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]
    if token:
        command += ["--header", f"Authorization: Token {token}"]
    else:
        schema = requests.get(f"{workerless_server}/api/schema/?format=json", timeout=30,
                              headers={"Authorization": f"Token {loader}"})
        schema.raise_for_status()
        (tmp_path / "schema.json").write_text(schema.text)
        command[2:3] = [str(tmp_path / "schema.json"), "--url", workerless_server]
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(PROJECT_ROOT),
           "SCHEMATHESIS_HOOKS": "tests.queueworks.taskapi.schemathesis_hooks"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                            cwd=tmp_path, env=env)
    output = result.stdout + result.stderr
    print(output[-6000:])  # shown with -s / on failure: operations, cases, seed
    assert result.returncode == 0, output[-8000:]
    # It really exercised the API (not an empty run against an unloaded schema).
    assert "/api/v1/tasks/" in output, output[-3000:]
