"""Bodies the JSON parser must refuse with 400 naming ``body``, and query
strings the OpenAPI schema forbids, refused the same way."""

import pytest

from tests.apps.taskapi.conftest import row_counts

pytestmark = pytest.mark.django_db

TASK = "apps.taskapi.tasks.diagnose"


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
