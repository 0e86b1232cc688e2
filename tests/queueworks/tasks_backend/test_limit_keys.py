"""A Django @task with a keyed limit (queueworks/limits): the key is an
argument like any other, and an enqueue without it is refused at once."""

import inspect

import pytest

from apps.testing import django_tasks
from queueworks.limits.checks_rate_concurrency import check_limits
from queueworks.limits.rules import key_value
from queueworks.tasks_backend import api
from queueworks.tasks_backend.worker import celery_task_for


# The accepted enqueue is published on commit: to the session's live system,
# never to a broker connection that a later live test would then inherit.
@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_an_enqueue_without_the_key_is_refused_naming_it(live_system):
    with pytest.raises(api.InvalidTask, match="tenant_id is required: the task's concurrency "
                                              "limit is keyed on it"):
        django_tasks.limited_echo.enqueue(value="x")
    assert django_tasks.limited_echo.enqueue("acme", value="x").id


def test_the_worker_reads_the_key_from_the_functions_own_parameters():
    from projectname.celery import app

    task = celery_task_for(app, django_tasks.limited_echo)
    assert list(inspect.signature(task.run).parameters) == ["tenant_id", "value"]
    assert key_value(task, "tenant_id", ("acme",), {}) == "acme"
    assert key_value(task, "tenant_id", (), {"tenant_id": 7, "value": "v"}) == "7"
    # The system check sees the same parameters.
    from projectname.topology import TOPOLOGY
    from queueworks.core.checks import project_task_names

    project_task_names()
    assert check_limits(TOPOLOGY, app.tasks) == []
