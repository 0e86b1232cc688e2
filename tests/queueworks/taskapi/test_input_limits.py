"""Bodies the JSON parser must refuse with 400 naming ``body``, and query
strings the OpenAPI schema forbids, refused the same way."""

import pytest

from tests.queueworks.taskapi.conftest import row_counts

pytestmark = pytest.mark.django_db

TASK = "queueworks.taskapi.tasks.diagnose"


def _post(client, body: str):
    return client.post("/api/v1/tasks/", data=body, content_type="application/json")


@pytest.mark.parametrize("depth", [30_000, 200])
def test_deeply_nested_body_is_400_naming_body(client_for, operator, depth):
    body = "[" * depth + "]" * depth
    assert len(body) <= 64 * 1024
    before = row_counts()
    response = _post(client_for(operator), body)
    assert response.status_code == 400, response.content[:300]
    assert "body" in response.json()["errors"], response.json()
    assert "nest" in response.json()["errors"]["body"][0]
    assert row_counts() == before


def test_nesting_inside_kwargs_is_refused_too(client_for, operator):
    inner = '{"a":' * 100 + "1" + "}" * 100
    response = _post(client_for(operator), f'{{"task": "{TASK}", "kwargs": {{"message": {inner}}}}}')
    assert response.status_code == 400
    assert "body" in response.json()["errors"]


def test_moderate_nesting_still_parses(client_for, operator):
    # Depth 3 (object > kwargs > value): an ordinary start is unaffected.
    response = _post(client_for(operator), f'{{"task": "{TASK}", "kwargs": {{"message": "x"}}}}')
    assert response.status_code == 202, response.content


@pytest.mark.parametrize("query", ["task=", "queue=", "state=", "since="])
def test_empty_filters_are_refused_naming_the_field(client_for, reader, query):
    response = client_for(reader).get(f"/api/v1/tasks/?{query}")
    assert response.status_code == 400, response.content
    assert query.rstrip("=") in response.json()["errors"]


@pytest.mark.parametrize("query", ["page_size=0", "page_size=null", "page_size=201", "page=0"])
def test_bad_paging_is_refused_not_ignored(client_for, reader, query):
    response = client_for(reader).get(f"/api/v1/tasks/?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()["errors"]


def test_an_integral_float_is_the_integer_json_schema_says_it_is(client_for, operator):
    from queueworks.taskapi.models import TaskRecord

    response = client_for(operator).post("/api/v1/tasks/", {
        "task": "apps.reports.tasks.build_period_report", "kwargs": {"report_id": 7.0}},
        format="json")
    assert response.status_code == 202, response.content
    assert client_for(operator).post("/api/v1/tasks/", {
        "task": "apps.reports.tasks.build_period_report", "kwargs": {"report_id": 7.5}},
        format="json").status_code == 400
    # What reaches the task is the integer (checked on the stored call, written on commit).
    from queueworks.taskapi.services import task_start
    from django.db import transaction

    with transaction.atomic():
        ticket = task_start(task="apps.reports.tasks.build_period_report", args=[7.0],
                            user=operator.user)
        captured = transaction.get_connection().run_on_commit[-1][1]
    from unittest import mock

    with mock.patch("queueworks.taskapi.recorded.task_enqueue") as enqueue, \
            mock.patch("queueworks.taskapi.recorded.publisher_supported", return_value=True):
        captured()
    assert enqueue.call_args.kwargs["args"] == [7] and isinstance(
        enqueue.call_args.kwargs["args"][0], int)
    assert TaskRecord.objects.get(task_id=ticket.task_id).args == [7]


@pytest.mark.parametrize("path,body,field", [
    ("/api/v1/tasks/", {"task": TASK, "priority": "5"}, "priority"),
    ("/api/v1/tasks/", {"task": TASK, "countdown": "3"}, "countdown"),
    ("/api/v1/tasks/bulk/", {"task": TASK, "kwargs_list": [{}], "priority": "5"}, "priority"),
])
def test_numbers_must_be_json_numbers(client_for, operator, path, body, field):
    # The schema says number; a string that looks like one is refused like any string.
    response = client_for(operator).post(path, body, format="json")
    assert response.status_code == 400 and field in response.json()["errors"], response.content
