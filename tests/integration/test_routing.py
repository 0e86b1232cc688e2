"""Tasks go to the worker bound to their queue, through the real broker."""

import uuid

import pytest

from queueworks.core.models import ProbeRun
from queueworks.core.tasks import heavy_probe, probe
from projectname.topology import TOPOLOGY
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.rabbitmq4, pytest.mark.django_db(transaction=True)]


def test_task_runs_on_the_worker_bound_to_its_queue(live_system):
    quick = probe.delay(uuid.uuid4().hex).get(timeout=30)
    slow = heavy_probe.delay(uuid.uuid4().hex, 0.1).get(timeout=30)

    assert quick["hostname"] == live_system.node("main_worker")
    assert quick["queue"] == "main_worker"
    assert slow["hostname"] == live_system.node("heavy_worker")
    assert slow["queue"] == "heavy"


def test_heavy_worker_never_receives_main_worker_tasks(live_system):
    tokens = [uuid.uuid4().hex for _ in range(30)]
    results = [probe.delay(token) for token in tokens]
    for result in results:
        result.get(timeout=30)

    runs = ProbeRun.objects.filter(token__in=tokens)
    assert runs.count() == 30
    assert {run.hostname for run in runs} == {live_system.node("main_worker")}


def test_unrouted_task_goes_to_the_default_queue_and_is_consumed(live_system):
    # An explicit queue override is honoured too; 'celery' is consumed by main_worker.
    result = probe.apply_async(args=[uuid.uuid4().hex], queue=TOPOLOGY.default_queue)
    assert result.get(timeout=30)["queue"] == TOPOLOGY.default_queue


def test_inspect_active_queues_matches_the_topology(live_system):
    expected = {live_system.node(w.name): sorted(w.queues) for w in TOPOLOGY.workers}
    # A loaded worker may miss one inspect timeout: ask until every node answered.
    replies = wait_for(lambda: (lambda r: r if set(r) >= set(expected) else None)(
        live_system.inspect("active_queues")), 90, interval=1,
        message=f"active_queues replies from {sorted(expected)}")
    bound = {node: sorted(q["name"] for q in queues) for node, queues in replies.items()}
    assert bound == expected
