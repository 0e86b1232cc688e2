"""What a broker or database error says stays in the log: the answer carries
a stable code and message and a reference, and the log line carrying the
error's own text carries the same reference.

The broker's refusal is real: a web server whose broker URL names a vhost
that does not exist, so RabbitMQ's answer ("access to vhost '...' refused
for user '...'") names the vhost (here a secret-looking string) and the user.
"""

import logging
import re
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.queueworks.taskapi.conftest import Http, _make_user, web_server
from tests.support import rabbit

SECRET = f"s3cr3t-{uuid.uuid4().hex[:12]}"
DIAGNOSE = "queueworks.taskapi.tasks.diagnose"
REFERENCE = re.compile(r"^[0-9a-f]{12}$")


def _refused_broker_url() -> str:
    user, password = rabbit.APP_AUTH
    return f"pyamqp://{quote(user, safe='')}:{quote(password, safe='')}@{rabbit.AMQP_HOSTPORT}/{SECRET}"


def _assert_referenced(response: requests.Response, *, status: int, code: str, log_text: str) -> str:
    assert response.status_code == status, response.text
    assert SECRET not in response.text and rabbit.APP_AUTH[0] not in response.text, response.text
    body = response.json()
    assert body["code"] == code and body["detail"], body
    assert REFERENCE.match(body.get("reference") or ""), body
    lines = [line for line in log_text.splitlines() if body["reference"] in line]
    assert lines and any(SECRET in line for line in lines), (body["reference"], log_text[-3000:])
    return body["reference"]


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_broker_refusal_answers_a_reference_and_logs_the_text(live_system):
    operator = _make_user(f"ref-operator-{uuid.uuid4().hex[:6]}", operator=True)
    env = {**live_system.env, "CELERY_BROKER_URL": _refused_broker_url()}
    with web_server(env) as base:
        log_path = Path(env["RUN_DIR"]) / f"taskapi-web-{base.rsplit(':', 1)[1]}.log"
        api = Http(base, operator)
        # Starts are committed before the publish: accepted, left to the
        # outbox, and the refusal's text stays out of the answer.
        starts = [
            api.post("/api/v1/tasks/", {"task": DIAGNOSE, "kwargs": {"message": "deferred"}}),
            api.post("/api/v1/tasks/bulk/", {"task": "queueworks.core.tasks.probe",
                                             "kwargs_list": [{"token": "deferred"}]}),
        ]
        for answer in starts:
            assert answer.status_code == 202 and answer.json()["published"] is False, answer.text
            assert SECRET not in answer.text and rabbit.APP_AUTH[0] not in answer.text
        answers = [api.get("/api/v1/queues/"), api.get("/api/v1/queues/")]
        references = {_assert_referenced(answer, status=503, code="broker_unavailable",
                                         log_text=log_path.read_text(errors="replace"))
                      for answer in answers}
    assert len(references) == len(answers)  # one per failure


@pytest.mark.django_db
def test_a_database_error_answers_a_reference_and_logs_the_text(client_for, operator, caplog):
    from django.db import connection

    def refuse(execute, sql, params, many, context):
        if "django_celery_results_taskresult" in sql:
            from django.db import OperationalError

            raise OperationalError(f"connection to server failed: password {SECRET} rejected")
        return execute(sql, params, many, context)

    with caplog.at_level(logging.WARNING), connection.execute_wrapper(refuse):
        response = client_for(operator).get("/api/v1/tasks/")
    assert response.status_code == 503, response.content
    assert SECRET.encode() not in response.content
    body = response.json()
    assert body["code"] == "database_unavailable" and REFERENCE.match(body.get("reference") or ""), body
    logged = [record for record in caplog.records if body["reference"] in record.getMessage()]
    assert logged and SECRET in (logged[0].getMessage() + str(logged[0].exc_info)), caplog.text


@pytest.mark.live
@pytest.mark.django_db
def test_a_failed_dead_letter_requeue_answers_a_reference(client, django_user_model, caplog):
    from django.contrib.auth.models import Permission

    from projectname.celery import app

    user = django_user_model.objects.create_user(username=f"ops-{uuid.uuid4().hex[:6]}")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="ops",
                                                     codename="requeue_dead_letters"))
    client.force_login(user)
    with caplog.at_level(logging.WARNING), rabbit.app_publishing_to(app, _refused_broker_url()):
        response = client.post(f"/ops/dead-letters/{uuid.uuid4()}/requeue/",
                               HTTP_ACCEPT="application/json")
    assert response.status_code in (400, 503), response.content
    assert SECRET.encode() not in response.content, response.content
    body = response.json()
    assert REFERENCE.match(body.get("reference") or ""), body
    logged = [record for record in caplog.records if body["reference"] in record.getMessage()]
    assert logged and SECRET in logged[0].getMessage(), caplog.text
