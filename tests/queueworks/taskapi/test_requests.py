"""Authentication, permissions and bad input: refused before anything is sent.

In-process (Django test client); no request here reaches the broker, because
every one is refused first, which is what these tests prove (no row written).
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult

from queueworks.taskapi import allowlist
from queueworks.taskapi.models import TaskRecord
from tests.queueworks.taskapi.conftest import row_counts

pytestmark = pytest.mark.django_db

TASK = "queueworks.taskapi.tasks.diagnose"
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

READ_ENDPOINTS = [
    "/api/v1/tasks/", f"/api/v1/tasks/{UNKNOWN_ID}/", "/api/v1/tasks/allowed/",
    "/api/v1/workers/", "/api/v1/queues/", "/api/schema/",
]
WRITE_ENDPOINTS = [
    ("/api/v1/tasks/", {"task": TASK}),
    (f"/api/v1/tasks/{UNKNOWN_ID}/cancel", {}),
    (f"/api/v1/tasks/{UNKNOWN_ID}/rerun", None),
]


def _assert_json_error(response, status, field=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["detail"] and body["code"]
    if field is not None:
        assert field in body["errors"], body
        assert all(body["errors"][field]), body
    return body


# -- authentication and permission ---------------------------------------------------

@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_anonymous_read_is_401_json(client_for, path):
    response = client_for().get(path, HTTP_ACCEPT=BROWSER_ACCEPT)
    body = _assert_json_error(response, 401)
    assert body["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("path,payload", WRITE_ENDPOINTS)
def test_anonymous_write_is_401_json(client_for, path, payload):
    before = row_counts()
    _assert_json_error(client_for().post(path, payload, format="json"), 401)
    assert row_counts() == before


def test_bad_token_is_401(client_for):
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    _assert_json_error(client.get("/api/v1/tasks/"), 401)


@pytest.mark.parametrize("path,payload", WRITE_ENDPOINTS)
def test_user_without_permission_cannot_start_cancel_or_rerun(client_for, reader, path, payload):
    before = row_counts()
    body = _assert_json_error(client_for(reader).post(path, payload, format="json"), 403)
    assert "task operators" in body["detail"]
    assert row_counts() == before


def test_reader_can_read(client_for, reader):
    client = client_for(reader)
    assert client.get("/api/v1/tasks/").status_code == 200
    assert client.get("/api/v1/tasks/allowed/").status_code == 200
    assert client.get("/api/schema/").status_code == 200


def test_session_auth_works_and_anonymous_docs_go_to_login(client, client_for, reader):
    response = client.get("/api/docs/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(reader.user)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui" in html and "/api/schema/" in html
    # The Swagger UI assets are served by the app itself (no CDN).
    asset = next(part.split('"')[0] for part in html.split('src="')[1:] if "swagger" in part)
    assert client.get(asset).status_code == 200
    assert client.get("/api/v1/tasks/").status_code == 200


def test_schema_is_openapi3_with_every_endpoint(client_for, reader):
    response = client_for(reader).get("/api/schema/", HTTP_ACCEPT="application/json")
    schema = json.loads(response.content) if response["Content-Type"].startswith(
        "application/json") else None
    if schema is None:
        import yaml

        schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) >= {
        "/api/v1/tasks/", "/api/v1/tasks/{task_id}/", "/api/v1/tasks/{task_id}/cancel",
        "/api/v1/tasks/{task_id}/rerun", "/api/v1/tasks/allowed/", "/api/v1/workers/",
        "/api/v1/queues/",
    }
    assert "tokenAuth" in schema["components"]["securitySchemes"]


# -- bad input -------------------------------------------------------------------------

def _future(seconds=60):
    return (timezone.now() + timedelta(seconds=seconds)).isoformat()


BAD_STARTS = [
    ({"task": "os.system", "args": ["rm -rf /"]}, "task"),
    ({"task": "celery.backend_cleanup"}, "task"),
    ({}, "task"),
    ({"task": TASK, "args": {"seconds": 1}}, "args"),
    ({"task": TASK, "args": ["one"]}, "args"),
    ({"task": TASK, "args": [1, False, "m", "extra"]}, "args"),
    ({"task": TASK, "kwargs": {"seconds": 51}}, "kwargs"),
    ({"task": TASK, "kwargs": {"seconds": -1}}, "kwargs"),
    ({"task": TASK, "kwargs": {"fail": "yes"}}, "kwargs"),
    ({"task": TASK, "kwargs": {"message": "x" * 201}}, "kwargs"),
    ({"task": TASK, "kwargs": {"nope": 1}}, "kwargs"),
    ({"task": TASK, "args": [1], "kwargs": {"seconds": 2}}, "kwargs"),
    ({"task": TASK, "kwargs": []}, "kwargs"),
    ({"task": "apps.reports.tasks.build_period_report"}, "kwargs"),
    ({"task": "apps.reports.tasks.build_period_report", "args": [0]}, "args"),
    ({"task": "apps.reports.tasks.build_period_report", "args": [True]}, "args"),
    ({"task": TASK, "queue": "nowhere"}, "queue"),
    ({"task": "queueworks.core.tasks.probe", "args": ["t"], "queue": "heavy"}, "queue"),
    ({"task": TASK, "priority": 10}, "priority"),
    ({"task": TASK, "priority": -1}, "priority"),
    ({"task": TASK, "priority": "high"}, "priority"),
    ({"task": TASK, "countdown": -5}, "countdown"),
    ({"task": TASK, "countdown": 10**9}, "countdown"),
    ({"task": TASK, "countdown": 5, "eta": None}, "eta"),
    ({"task": TASK, "eta": "tomorrow-ish"}, "eta"),
    ({"task": TASK, "eta": "2001-01-01T00:00:00Z"}, "eta"),
    ({"task": TASK, "eta": "2999-01-01T00:00:00Z"}, "eta"),
]


@pytest.mark.parametrize("payload,field", BAD_STARTS)
def test_bad_start_is_400_naming_the_field_and_sends_nothing(client_for, operator, payload, field):
    before = row_counts()
    response = client_for(operator).post("/api/v1/tasks/", payload, format="json")
    _assert_json_error(response, 400, field)
    assert row_counts() == before


def test_countdown_and_eta_together_are_refused(client_for, operator):
    response = client_for(operator).post(
        "/api/v1/tasks/", {"task": TASK, "countdown": 5, "eta": _future()}, format="json")
    _assert_json_error(response, 400, "countdown")


@pytest.mark.parametrize("body,content_type,status,field", [
    (b'{"task": "queueworks.taskapi.tasks.diagnose",', "application/json", 400, "body"),
    (b"[1, 2, 3]", "application/json", 400, "body"),
    (b"task=queueworks.taskapi.tasks.diagnose", "application/x-www-form-urlencoded", 415,
     "content_type"),
    (b'{"task": "' + b"x" * 70_000 + b'"}', "application/json", 400, "body"),
])
def test_malformed_or_oversized_body(client_for, operator, body, content_type, status, field):
    before = row_counts()
    response = client_for(operator).generic("POST", "/api/v1/tasks/", body,
                                            content_type=content_type)
    _assert_json_error(response, status, field)
    assert row_counts() == before


def test_unknown_task_id_is_404_everywhere(client_for, operator):
    client = client_for(operator)
    _assert_json_error(client.get(f"/api/v1/tasks/{UNKNOWN_ID}/"), 404)
    _assert_json_error(client.post(f"/api/v1/tasks/{UNKNOWN_ID}/cancel", {}, format="json"), 404)
    _assert_json_error(client.post(f"/api/v1/tasks/{UNKNOWN_ID}/rerun"), 404)


def test_list_filters_are_validated(client_for, reader):
    client = client_for(reader)
    _assert_json_error(client.get("/api/v1/tasks/?state=BOGUS"), 400, "state")
    _assert_json_error(client.get("/api/v1/tasks/?since=yesterday"), 400, "since")
    _assert_json_error(client.get("/api/v1/tasks/?page=99"), 404)


def _stored(status, name=TASK, **fields):
    return TaskResult.objects.create(task_id=fields.pop("task_id", f"stored-{status}-{name}"),
                                     task_name=name, status=status, **fields)


def _started_by(api_user, status, name=TASK):
    """A task ``api_user`` started through the API (not a system task)."""
    stored = _stored(status, name)
    TaskRecord.objects.create(task_id=stored.task_id, task_name=name, queue="celery",
                              requested_by=api_user.user)
    return stored


@pytest.mark.parametrize("status", ["SUCCESS", "FAILURE"])
def test_cancel_of_a_finished_task_is_409(client_for, operator, status):
    stored = _started_by(operator, status)
    body = _assert_json_error(
        client_for(operator).post(f"/api/v1/tasks/{stored.task_id}/cancel", {}, format="json"),
        409)
    assert status in body["detail"]
    assert TaskResult.objects.get(task_id=stored.task_id).status == status


def test_cancel_of_a_running_task_needs_terminate(client_for, operator):
    stored = _started_by(operator, "STARTED")
    _assert_json_error(
        client_for(operator).post(f"/api/v1/tasks/{stored.task_id}/cancel", {}, format="json"),
        409, "terminate")
    assert not TaskRecord.objects.filter(task_id=stored.task_id, cancelled_at__isnull=False)


@pytest.mark.parametrize("payload,field", [
    ({"signal": "SIGSEGV"}, "signal"), ({"terminate": "yes"}, "terminate"),
])
def test_cancel_input_is_validated(client_for, operator, payload, field):
    stored = _started_by(operator, "PENDING")
    _assert_json_error(client_for(operator).post(
        f"/api/v1/tasks/{stored.task_id}/cancel", payload, format="json"), 400, field)


def test_rerun_of_a_task_that_is_not_allowlisted_is_409(client_for, operator):
    stored = _stored("SUCCESS", name="celery.backend_cleanup",
                     task_args='"()"', task_kwargs='"{}"')
    before = row_counts()
    body = _assert_json_error(
        client_for(operator).post(f"/api/v1/tasks/{stored.task_id}/rerun"), 409, "task")
    assert "not allowlisted" in body["detail"]
    assert row_counts() == before


def test_rerun_refused_once_the_task_left_the_allowlist(client_for, operator, monkeypatch):
    TaskRecord.objects.create(task_id="rec-1", task_name=TASK, args=[0], kwargs={},
                              queue="main_worker")
    _stored("SUCCESS", task_id="rec-1")
    monkeypatch.delitem(allowlist.ALLOWLIST, TASK)
    _assert_json_error(client_for(operator).post("/api/v1/tasks/rec-1/rerun"), 409, "task")


def test_rerun_refused_when_stored_args_no_longer_fit(client_for, operator):
    TaskRecord.objects.create(task_id="rec-2", task_name=TASK, args=[999], kwargs={},
                              queue="main_worker")
    _stored("SUCCESS", task_id="rec-2")
    _assert_json_error(client_for(operator).post("/api/v1/tasks/rec-2/rerun"), 409, "args")


# -- reads that need no worker -------------------------------------------------------------

def test_detail_and_list_of_a_stored_failure(client_for, operator, staff):
    TaskResult.objects.create(
        task_id="failed-1", task_name=TASK, status="FAILURE", content_type="application/json",
        content_encoding="utf-8", traceback="Traceback (most recent call last): ...",
        result=json.dumps({"exc_type": "DiagnosticError", "exc_message": ["boom"],
                           "exc_module": "queueworks.taskapi.services"}),
    )
    body = client_for(operator).get("/api/v1/tasks/failed-1/").json()
    assert body["state"] == "FAILURE"
    assert body["error"]["traceback"].startswith("Traceback")  # operators read every task
    del body["error"]["traceback"]
    assert body["error"] == {"type": "DiagnosticError", "module": "queueworks.taskapi.services",
                             "message": "boom"}
    assert body["queue"] == "main_worker"
    # Staff status without view_all_tasks: a task someone else started is unknown.
    assert client_for(staff).get("/api/v1/tasks/failed-1/").status_code == 404

    listed = client_for(operator).get("/api/v1/tasks/?state=FAILURE&queue=main_worker").json()
    assert [row["task_id"] for row in listed["results"]] == ["failed-1"]
    assert client_for(operator).get("/api/v1/tasks/?queue=heavy").json()["count"] == 0
    assert client_for(operator).get(f"/api/v1/tasks/?task={TASK}").json()["count"] == 1
    since = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert client_for(operator).get("/api/v1/tasks/", {"since": since}).json()["count"] == 0


def test_allowed_lists_schemas(client_for, reader):
    listed = {entry["task"]: entry for entry in
              client_for(reader).get("/api/v1/tasks/allowed/").json()}
    assert set(listed) == set(allowlist.ALLOWLIST)
    report = listed["apps.reports.tasks.build_period_report"]
    assert report["queues"] == ["heavy"]
    assert report["params"][0] == {"name": "report_id", "type": "int", "required": True,
                                   "minimum": 1, "maximum": 2**63 - 1}


@pytest.mark.parametrize("task_id", [
    "0b5c6a2e-1f7e-4d8e-9a43-2b0c2f1d9e77", "a b", "ümlaut", "50%", "why?", "x#y",
    "a:b@c~d", "(){}[]", "..", ".", "+&=",
])
def test_status_urls_in_a_list_are_what_reverse_gives(client_for, operator, task_id):
    """The list resolves the route once per page; each row's URL must not differ."""
    from django.test import RequestFactory
    from django.urls import reverse

    TaskResult.objects.create(task_id=task_id, task_name="x", status="SUCCESS")
    row = client_for(operator).get("/api/v1/tasks/").json()["results"][0]
    expected = RequestFactory().get("/").build_absolute_uri(
        reverse("taskapi:task-detail", args=[task_id]))
    assert row["task_id"] == task_id and row["status_url"] == expected


def test_queue_filter_and_own_tasks_filter_together(client_for, reader, operator):
    """A user without view_all_tasks filtering by queue: both record columns are joined."""
    mine_here = _started_by(reader, "SUCCESS")  # published to "celery"
    TaskRecord.objects.filter(task_id=mine_here.task_id).update(queue="heavy")
    _started_by(reader, "FAILURE", name="queueworks.core.tasks.probe")  # "celery", route: main_worker
    _stored("SUCCESS", name="apps.reports.tasks.build_daily_report")  # nobody's, route: heavy

    def listed(client, query):
        return {row["task_id"] for row in client.get(f"/api/v1/tasks/?{query}").json()["results"]}

    assert listed(client_for(reader), "queue=heavy") == {mine_here.task_id}
    assert listed(client_for(reader), "queue=celery") == {
        "stored-FAILURE-queueworks.core.tasks.probe"}
    assert listed(client_for(operator), "queue=heavy") == {
        mine_here.task_id, "stored-SUCCESS-apps.reports.tasks.build_daily_report"}
    assert len(listed(client_for(reader), "")) == 2
