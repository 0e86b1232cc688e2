"""Fair sharing without a broker: the sub-queues a fair queue declares, what
its workers consume, and the sub-queue each publish path picks for a call
(queueworks/limits/fair.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from queueworks.core.topology import Queue, Route, Topology, Worker
from queueworks.limits.declaration import FairShare
from queueworks.limits.fair import fair_bucket, fair_queue_for

TASK = "apps.testing.tasks.fair_job"


@pytest.fixture
def fair_topology(monkeypatch):
    """The project's topology with ``heavy`` shared fairly (4 buckets) by fair_job."""
    import queueworks.conf as conf

    declared = conf.topology()
    topology = replace(declared, queues=tuple(
        replace(queue, fair_buckets=4) if queue.name == "heavy" else queue
        for queue in declared.queues)).with_added(
        routes=(Route(TASK, "heavy", fair_share=FairShare(key="tenant_id")),))
    from queueworks.limits.unique import limits_declarations_reset

    monkeypatch.setattr(conf, "topology", lambda: topology)
    limits_declarations_reset()
    yield topology
    monkeypatch.undo()
    limits_declarations_reset()


def test_a_fair_queue_declares_its_sub_queues_like_itself():
    queue = Queue("shared", "fair lane", max_priority=9, queue_type="quorum", fair_buckets=3)
    topology = Topology(queues=(queue,), workers=(Worker("w", ("shared",)),), routes=(),
                        schedules=())
    declared = {q.name: q for q in topology.celery_queues()}
    assert list(declared) == ["shared", "shared.fair.0", "shared.fair.1", "shared.fair.2"]
    for name in ("shared.fair.0", "shared.fair.2"):
        assert declared[name].queue_arguments == declared["shared"].queue_arguments
        assert declared[name].exchange.name == name and declared[name].routing_key == name
    assert topology.consumed_queue_names(topology.workers[0]) == list(declared)
    # migrate_queues (every queue Celery declares) pauses a sub-queue's consumers by this.
    assert [w.name for w in topology.consumers_of("shared.fair.1")] == ["w"]


@pytest.mark.parametrize("buckets", [1, 65, -1])
def test_fair_buckets_must_be_none_or_two_to_64(buckets):
    with pytest.raises(ValueError, match="fair_buckets"):
        Queue("shared", "fair lane", fair_buckets=buckets)


def test_the_worker_program_consumes_the_sub_queues():
    from queueworks.core.supervisor import programs

    topology = Topology(queues=(Queue("shared", "x", fair_buckets=2), Queue("other", "y")),
                        workers=(Worker("w", ("shared", "other")),), routes=(), schedules=())
    command = next(p.command for p in programs(topology) if p.name == "w")
    assert "--queues=shared,shared.fair.0,shared.fair.1,other " in command


def test_the_bucket_is_stable_and_spreads_keys():
    assert fair_bucket("tenant-a", 8) == fair_bucket("tenant-a", 8) == 3  # CRC-32, not hash()
    assert len({fair_bucket(f"tenant-{i}", 8) for i in range(100)}) == 8


def test_a_call_goes_to_its_keys_sub_queue(fair_topology):
    bucket = fair_bucket("acme", 4)
    assert fair_queue_for(TASK, None, (), {"tenant_id": "acme"}) == f"heavy.fair.{bucket}"
    assert fair_queue_for(TASK, "heavy", ("acme",), {}) == f"heavy.fair.{bucket}"
    # Without the key, to another queue on purpose, or another task: unchanged.
    assert fair_queue_for(TASK, None, (), {"sent_at": 1.0}) == "heavy"
    assert fair_queue_for(TASK, "main_worker", (), {"tenant_id": "acme"}) == "main_worker"
    assert fair_queue_for("apps.testing.tasks.noop", None, (), {}) is None


def test_bulk_publishing_splits_a_batch_by_sub_queue(fair_topology, monkeypatch):
    from queueworks.dispatch import bulk
    from queueworks.dispatch.services import tasks_enqueue_bulk

    sent: dict[str, int] = {}

    def publish(app, messages, *, count, queue_name, task_ids, confirm_timeout):
        sent[queue_name] = sent.get(queue_name, 0) + len(list(messages))

    monkeypatch.setattr(bulk, "_publish_on_pooled_connection", publish)
    monkeypatch.setattr(bulk, "_queue_name", lambda app, task, queue: queue or "heavy")
    tenants = ["a", "b", "c", "a", "a"]
    result = tasks_enqueue_bulk(task=TASK, kwargs_list=[{"tenant_id": t} for t in tenants])
    assert len(result.task_ids) == 5
    expected: dict[str, int] = {}
    for tenant in tenants:
        name = f"heavy.fair.{fair_bucket(tenant, 4)}"
        expected[name] = expected.get(name, 0) + 1
    assert sent == expected


def test_apply_async_publishes_to_the_keys_sub_queue(fair_topology, monkeypatch):
    from celery.app.task import Task

    from apps.testing.tasks import fair_job

    seen = {}
    monkeypatch.setattr(Task, "apply_async",
                        lambda self, args=None, kwargs=None, **options: seen.update(options))
    fair_job.apply_async(kwargs={"tenant_id": "acme"})
    assert seen["queue"] == f"heavy.fair.{fair_bucket('acme', 4)}"


@pytest.mark.django_db
def test_the_outbox_publishes_to_the_keys_sub_queue_and_records_the_queue(
        fair_topology, monkeypatch, django_capture_on_commit_callbacks):
    import queueworks.taskapi.recorded as services
    from queueworks.taskapi.models import TaskRecord

    published = []
    monkeypatch.setattr(services, "publisher_supported", lambda: True)
    monkeypatch.setattr(services, "task_enqueue", lambda **kw: published.append(kw["queue"]))
    with django_capture_on_commit_callbacks(execute=True):
        task_id = services.recorded_task_enqueue(
            task_name=TASK, args=[], kwargs={"tenant_id": "acme"}, queue="heavy",
            priority=None, run_at=None)
    assert published == [f"heavy.fair.{fair_bucket('acme', 4)}"]
    # The record keeps the lane the caller asked for (what the API shows).
    assert TaskRecord.objects.get(task_id=task_id).queue == "heavy"


def test_doctor_fails_a_fair_queue_whose_sub_queue_is_missing_or_unconsumed():
    from queueworks.doctor.checks_broker import _fair_finding

    queue = Queue("shared", "x", fair_buckets=2)
    ok = _fair_finding(queue, {"shared.fair.0": (3, 1), "shared.fair.1": (4, 1)}, "w", "start")
    assert ok.status == "OK" and "7 message(s)" in ok.message
    missing = _fair_finding(queue, {"shared.fair.0": (0, 1)}, "w", "start")
    assert missing.status == "FAIL" and "shared.fair.1" in missing.message
    idle = _fair_finding(queue, {"shared.fair.0": (0, 1), "shared.fair.1": (9, 0)}, "w", "s")
    assert idle.status == "FAIL" and "0 consumers on shared.fair.1" in idle.message


def test_a_change_of_buckets_or_fair_share_restarts_publishers_and_workers():
    from queueworks.core.topology_changes import program_parts

    base = Topology(queues=(Queue("shared", "x"),), workers=(Worker("w", ("shared",)),),
                    routes=(Route("t.job", "shared"),), schedules=())
    fair = replace(base, queues=(Queue("shared", "x", fair_buckets=4),),
                   routes=(Route("t.job", "shared", fair_share=FairShare(key="tenant")),))
    before, after = program_parts(base), program_parts(fair)
    assert before["w"]["routes"] != after["w"]["routes"]
    assert before["web"]["routes"] != after["web"]["routes"]
    # A topology without limits keeps the record it always had.
    assert "fair" not in before["web"]["routes"] and "Unique" not in before["web"]["routes"]


def test_a_fair_queues_state_includes_its_sub_queues():
    from queueworks.core.broker_state import QueueState
    from queueworks.limits.fair import fold_fair_states

    topology = Topology(queues=(Queue("shared", "x", fair_buckets=2), Queue("other", "y")),
                        workers=(Worker("w", ("shared", "other")),), routes=(), schedules=())
    states = {
        "shared": QueueState("shared", True, ready=1, unacked=0, consumers=2, oldest_wait=1.0),
        "shared.fair.0": QueueState("shared.fair.0", True, ready=50, unacked=2, consumers=2,
                                    oldest_wait=30.0),
        "shared.fair.1": QueueState("shared.fair.1", True, ready=0, consumers=2),
        "other": QueueState("other", True, ready=3, consumers=1, oldest_wait=2.0),
    }
    folded = fold_fair_states(topology, states)
    assert set(folded) == {"shared", "other"}
    assert (folded["shared"].ready, folded["shared"].unacked, folded["shared"].consumers,
            folded["shared"].oldest_wait) == (51, 2, 2, 30.0)
    assert folded["other"] == states["other"]
    assert topology.declared_queue_names() == ["shared", "shared.fair.0", "shared.fair.1",
                                               "other"]


def test_the_balancer_counts_a_fair_queues_sub_queues():
    from queueworks.balancer.runner import Balancer
    from queueworks.core.topology import Balance

    topology = Topology(
        queues=(Queue("shared", "x", fair_buckets=2), Queue("other", "y")),
        workers=(Worker("a", ("shared",)), Worker("b", ("other",))), routes=(), schedules=(),
        balance=Balance(workers=("a", "b"), budget=4))
    balancer = Balancer(app=None, topology=topology, host="h")
    assert balancer.queues_of("a") == ("shared", "shared.fair.0", "shared.fair.1")
    assert balancer.queues_of("b") == ("other",)
