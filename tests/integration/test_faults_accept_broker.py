"""A broker restart while the Task API and its bulk endpoint take starts: on a
throw-away RabbitMQ node of this module (never the shared broker on 5672),
with the web program and the workers under their own supervisord."""

from __future__ import annotations

import pytest

from bench.faults_harness import TABLE_HEADER, Harness
from tests.support.node_system import node_system

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TASKS = 100


@pytest.fixture(scope="module")
def web_node_system(django_db_setup, django_db_blocker, tmp_path_factory):
    # This process's sweeps publish to the node too (the harness runs them).
    with node_system(tmp_path_factory.mktemp("rabbit-node-web"), extra_programs=("web",),
                     app_publishes_here=True) as system:
        yield system


def test_a_broker_restart_under_api_and_bulk_starts_loses_no_accepted_task(web_node_system):
    from django_celery_results.models import TaskResult

    from queueworks.core.models import ProbeRun
    from queueworks.taskapi.models import TaskRecord

    harness = Harness(web_node_system, rabbit_node=web_node_system.rabbit_node,
                      stall_seconds=90, log=print)
    result = harness.run("api-broker-restart", TASKS)
    print("\n" + TABLE_HEADER + "\n" + result.row() + "\n" + "\n".join(result.notes))
    assert result.ok, result
    assert "stop_app" in result.notes[0]
    records = TaskRecord.objects.filter(kwargs__token__startswith="br-")
    tokens = [r.kwargs["token"] for r in records]
    assert len(set(tokens)) >= result.sent
    assert not records.filter(confirmed_at__isnull=True).exists()
    assert ProbeRun.objects.filter(token__in=tokens).count() == len(set(tokens))
    assert TaskResult.objects.filter(task_id__in=[r.task_id for r in records],
                                     status="SUCCESS").count() == len(tokens)
