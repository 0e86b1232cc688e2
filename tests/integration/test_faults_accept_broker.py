"""A broker restart while the Task API and its bulk endpoint take starts: on a
throw-away RabbitMQ node of this module (never the shared broker on 5672),
with the web program and the workers under their own supervisord."""

from __future__ import annotations

import pytest

from bench.faults_harness import TABLE_HEADER, Harness, workers_only_system
from bench.rabbit_node import RabbitNode
from tests.support import rabbit

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TASKS = 100


@pytest.fixture(scope="module")
def web_node_system(django_db_setup, django_db_blocker, tmp_path_factory):
    from django.db import connection

    from projectname.celery import app
    from tests.conftest import _database_url

    base = tmp_path_factory.mktemp("rabbit-node-web")
    node = RabbitNode(base_dir=base / "node")
    node.start()
    system = workers_only_system(run_dir=base / "system", broker_url=node.url,
                                 database_url=_database_url(connection.settings_dict),
                                 extra_programs=("web",))
    # This process's sweeps publish to the node too (the harness runs them).
    with rabbit.app_publishing_to(app, node.url):
        try:
            system.start()
            system.rabbit_node = node
            yield system
        finally:
            system.stop()
            node.stop()


def test_a_broker_restart_under_api_and_bulk_starts_loses_no_accepted_task(web_node_system):
    from django_celery_results.models import TaskResult

    from apps.core.models import ProbeRun
    from apps.taskapi.models import TaskRecord

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
