"""The accept-path fault scenarios (bench/faults_accept.py) at test size on the
session's live system: every accepted task runs, its effect once, nothing
lost, no answer proved false.  Counted here again from the tables and queues,
not only from the harness's numbers."""

from __future__ import annotations

import pytest

from bench.faults_harness import Harness

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TASKS = 100


@pytest.fixture
def harness(live_system):
    return Harness(live_system, stall_seconds=90, log=print)


def _print(result):
    from bench.faults_harness import TABLE_HEADER

    print("\n" + TABLE_HEADER + "\n" + result.row() + "\n" + "\n".join(result.notes))


def _queue_depths(live_system) -> dict[str, int]:
    from tests.support import rabbit
    from tests.support.live import wait_for

    def empty():
        depths = {q: rabbit.queue_info(live_system.vhost, q)["messages"]
                  for q in ("main_worker", "bulk", "heavy")}
        return depths if not any(depths.values()) else None

    return wait_for(empty, 60, interval=1, message="queues drained")


@pytest.mark.postgres
def test_sigkilled_web_workers_lose_no_accepted_start(harness, live_system):
    from django_celery_results.models import TaskResult

    from queueworks.core.models import ProbeRun
    from queueworks.taskapi.models import TaskRecord

    result = harness.run("api-kill-web", TASKS)
    _print(result)
    assert result.ok, result
    assert "SIGKILLed web workers" in result.notes[0] and result.notes[0].strip()[-1].isdigit()
    # Independently: every accepted record is confirmed, its probe row exists
    # once (unique token) and its result is SUCCESS; the queues are empty.
    records = TaskRecord.objects.filter(task_name="queueworks.core.tasks.probe",
                                        kwargs__token__startswith="kw-")
    accepted = result.sent
    assert accepted >= TASKS // 2, result.notes
    assert not records.filter(confirmed_at__isnull=True).exists()
    tokens = [r.kwargs["token"] for r in records]
    assert ProbeRun.objects.filter(token__in=tokens).count() == len(tokens)
    assert TaskResult.objects.filter(task_id__in=[r.task_id for r in records],
                                     status="SUCCESS").count() == len(tokens)
    _queue_depths(live_system)


def test_a_bulk_enqueue_cut_mid_batch_loses_nothing_and_applies_nothing_twice(harness,
                                                                                live_system):
    from queueworks.reliability.models import Effect
    from apps.testing.models import FaultAccount

    # Batches of 150 (over 64 KiB): the cut lands while a batch is written.
    tasks = TASKS * 6
    result = harness.run("bulk-cut-connection", tasks)
    _print(result)
    assert result.ok, result
    assert result.notes[0].split()[0] != "0", "no batch was cut: the fault did not happen"
    keys = Effect.objects.filter(key__startswith=f"fault:{result.run_id}:").count()
    assert keys == tasks
    assert FaultAccount.objects.get(run_id=result.run_id).balance == tasks
    _queue_depths(live_system)


def test_a_sigkilled_bulk_worker_holding_coalesced_acks_loses_nothing(harness, live_system):
    from queueworks.reliability.models import Effect
    from apps.testing.models import FaultAccount

    result = harness.run("kill-bulk-worker", TASKS * 5)
    _print(result)
    assert result.ok, result
    assert result.notes[0].startswith("kill -9 bulk_worker_1"), result.notes
    keys = Effect.objects.filter(key__startswith=f"fault:{result.run_id}:").count()
    assert keys == TASKS * 5
    assert FaultAccount.objects.get(run_id=result.run_id).balance == TASKS * 5
    _queue_depths(live_system)
    live_system.wait_running(["bulk_worker_1"], timeout=90)
