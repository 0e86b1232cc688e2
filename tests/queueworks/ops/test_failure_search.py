"""/ops/failures/: search failed tasks by name, queue, error text and time range."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}


def _failure(task_id, task_name, message, *, minutes_ago=5):
    row = TaskResult.objects.create(
        task_id=task_id, task_name=task_name, status="FAILURE",
        result=json.dumps({"exc_type": "ValueError", "exc_message": [message]}),
        traceback=f"Traceback ...\nValueError: {message}")
    TaskResult.objects.filter(pk=row.pk).update(date_done=timezone.now() - timedelta(minutes=minutes_ago))


@pytest.fixture
def viewer(client, make_user):
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    return client


@pytest.fixture
def failures():
    _failure("f-report", "apps.reports.tasks.build_period_report", "period 42 has no rows", minutes_ago=90)
    _failure("f-note", "apps.notifications.tasks.send_notification", "Notification 7 does not exist")
    _failure("f-probe", "queueworks.core.tasks.probe", "probe exploded", minutes_ago=30)
    TaskResult.objects.create(task_id="ok-1", task_name="queueworks.core.tasks.probe", status="SUCCESS")


def ids(response):
    return [row["task_id"] for row in response.json()["failures"]]


def test_every_filter_narrows_the_failures(viewer, failures):
    assert ids(viewer.get("/ops/failures/", **JSON)) == ["f-note", "f-probe", "f-report"]
    assert ids(viewer.get("/ops/failures/?task=reports", **JSON)) == ["f-report"]
    assert ids(viewer.get("/ops/failures/?queue=heavy", **JSON)) == ["f-report"]
    assert ids(viewer.get("/ops/failures/?queue=main_worker", **JSON)) == ["f-note", "f-probe"]
    assert ids(viewer.get("/ops/failures/?error=does+not+exist", **JSON)) == ["f-note"]
    # Naive input is in the dashboard's time zone (TIME_ZONE), as the page shows times.
    since = (timezone.localtime() - timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%M:%S")
    until = (timezone.localtime() - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")
    assert ids(viewer.get(f"/ops/failures/?since={since}&until={until}", **JSON)) == ["f-probe"]
    row = viewer.get("/ops/failures/?task=probe", **JSON).json()["failures"][0]
    assert row["queue"] == "main_worker" and row["error"] == "ValueError: probe exploded"


@pytest.mark.parametrize("query,field", [
    ("queue=nowhere", "queue"), ("since=yesterday-ish", "since"), ("until=13/45/2026", "until"),
    ("limit=0", "limit"), ("limit=many", "limit"), ("task=" + "x" * 201, "task"),
    ("since=2026-01-02T00:00&until=2026-01-01T00:00", "until"),
])
def test_bad_input_is_a_400_json_naming_the_field(viewer, query, field):
    response = viewer.get(f"/ops/failures/?{query}", **JSON)
    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]
    assert field in response.json()["error"]


def test_bad_input_in_a_browser_shows_the_form_error_by_field(viewer, failures):
    response = viewer.get("/ops/failures/?since=not-a-date&task=probe")
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-field="since"' in html and "Enter a valid date/time." in html
    assert 'value="probe"' in html  # what was typed stays
    assert "fix the search first" in html


def test_the_page_lists_matches(viewer, failures):
    html = viewer.get("/ops/failures/?error=exploded").content.decode()
    assert 'data-task-id="f-probe"' in html and 'data-task-id="f-note"' not in html


def test_searching_needs_the_view_permission(client, make_user, failures):
    assert client.get("/ops/failures/", **JSON).status_code == 403
    client.force_login(make_user("nobody", staff=True))
    response = client.get("/ops/failures/", **JSON)
    assert response.status_code == 403 and "taskapi.view_all_tasks" in response.json()["error"]
