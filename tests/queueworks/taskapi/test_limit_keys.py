"""The Task API: the key of a rate or concurrency limit is an argument of
the call, validated like every other; without it the call is a 400 naming
the field and nothing is sent."""

import pytest

from queueworks.taskapi.allowlist import allowed
from queueworks.taskapi.models import TaskRecord

pytestmark = pytest.mark.django_db
TASK = "apps.testing.tasks.limited_concurrency"


def test_a_call_without_the_key_is_400_naming_it(client_for, operator):
    response = client_for(operator).post("/api/v1/tasks/", {"task": TASK, "kwargs": {"ms": 5}},
                                         format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert "kwargs" in str(body) and "tenant_id is required" in str(body)
    assert not TaskRecord.objects.exists()


def test_the_key_is_checked_like_any_argument():
    entry = allowed(TASK)
    assert entry.bind([], {"tenant_id": "acme"})[1] == {}
    assert entry.bind(["acme"], {})[1] == {}
    assert "must be a string" in str(entry.bind([], {"tenant_id": 5})[1]["kwargs"])
    assert "at most 100" in str(entry.bind(["x" * 101], {})[1]["args"])
