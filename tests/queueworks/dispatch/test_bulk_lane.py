"""The bulk lane through the session's real system: two bulk_worker programs
(solo pool, lean path, coalesced acks) on the real broker."""

from __future__ import annotations

import uuid

import pytest

from queueworks.dispatch.services import task_enqueue, tasks_enqueue_bulk
from projectname.topology import TOPOLOGY
from tests.support import rabbit
from tests.support.live import wait_for

BULK_WORKERS = [worker.name for worker in TOPOLOGY.consumers_of("bulk")]


def _probe_rows(tokens):
    from queueworks.core.models import ProbeRun

    rows = list(ProbeRun.objects.filter(token__in=tokens, finished_at__isnull=False))
    return rows if len(rows) == len(tokens) else None


def _result(task_id, states=("SUCCESS", "FAILURE")):
    from django_celery_results.models import TaskResult

    row = TaskResult.objects.filter(task_id=task_id, status__in=states).first()
    return row


def _settled(vhost: str, queue: str):
    info = rabbit.queue_info(vhost, queue)
    return info if info.get("messages") == 0 and info.get("messages_unacknowledged") == 0 \
        else None


@pytest.mark.rabbitmq4
@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_bulk_lane_runs_each_task_once_stores_results_and_acks_everything(live_system):
    from queueworks.core.tasks import probe
    from django_celery_results.models import TaskResult

    assert BULK_WORKERS == ["bulk_worker_1", "bulk_worker_2"]
    tokens = [f"lane-{uuid.uuid4().hex[:8]}-{i}" for i in range(300)]
    result = tasks_enqueue_bulk(task=probe, kwargs_list=[{"token": t} for t in tokens],
                                queue="bulk")
    assert result.queue == "bulk"
    rows = wait_for(lambda: _probe_rows(tokens), 120, interval=0.5, message="300 probes ran")
    assert {row.queue for row in rows} == {"bulk"}
    assert {row.hostname for row in rows} <= {live_system.node(name) for name in BULK_WORKERS}
    # Exactly once each: the coalesced acks left nothing to redeliver.
    assert all(row.deliveries == 1 for row in rows)
    done = wait_for(lambda: (lambda n: n if n == 300 else None)(TaskResult.objects.filter(
        task_id__in=result.task_ids, status="SUCCESS").count()), 60, interval=0.5,
        message="300 SUCCESS results")
    assert done == 300
    # Nothing ready and nothing unacknowledged is left on the queue.
    wait_for(lambda: _settled(live_system.vhost, "bulk"), 60, interval=1,
             message="bulk queue empty with no unacked message")


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_bulk_lane_failures_and_time_limits_follow_celery_rules(live_system):
    pids = {name: live_system.rpc().getProcessInfo(name)["pid"] for name in BULK_WORKERS}
    run_id = uuid.uuid4().hex[:8]
    # A failing task: FAILURE with its error, acknowledged (not redelivered).
    failing = task_enqueue(task="queueworks.taskapi.tasks.diagnose", queue="bulk",
                           kwargs={"fail": True, "message": "boom in the bulk lane"})
    # The route's soft limit (2 s) stops a 10 s sleep; ignoring it, the hard
    # limit (5 s) does, and the worker process survives both.
    soft = task_enqueue(task="apps.testing.tasks.fault_sleep", queue="bulk",
                        kwargs={"run_id": run_id, "token": "soft", "seconds": 10})
    hard = task_enqueue(task="apps.testing.tasks.fault_sleep", queue="bulk",
                        kwargs={"run_id": run_id, "token": "hard", "seconds": 10,
                                "ignore_soft_limit": True})
    after = task_enqueue(task="queueworks.taskapi.tasks.diagnose", queue="bulk",
                         kwargs={"message": "still consuming"})

    failed = wait_for(lambda: _result(failing), 60, interval=0.5, message="failure stored")
    assert failed.status == "FAILURE" and "boom in the bulk lane" in failed.result
    soft_row = wait_for(lambda: _result(soft), 60, interval=0.5, message="soft limit")
    assert soft_row.status == "FAILURE" and "SoftTimeLimitReached" in soft_row.result
    hard_row = wait_for(lambda: _result(hard), 60, interval=0.5, message="hard limit")
    assert hard_row.status == "FAILURE" and "TimeLimitExceeded" in hard_row.result
    ok = wait_for(lambda: _result(after), 60, interval=0.5, message="later task ran")
    assert ok.status == "SUCCESS"
    assert {name: live_system.rpc().getProcessInfo(name)["pid"] for name in BULK_WORKERS} == pids
    wait_for(lambda: _settled(live_system.vhost, "bulk"), 60, interval=1,
             message="failed messages acknowledged, none left")
