"""The fault-injection scenarios (bench/faults.py) at test size, on the
session's live system: nothing lost, no effect applied twice, poison and
crash-looping messages dead-lettered, workers serving afterwards."""

import uuid

import pytest

from queueworks.core.tasks import heavy_probe, probe
from bench.faults_harness import Harness
from tests.support.fault_counts import assert_counts_agree

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TASKS = 200


@pytest.fixture
def harness(live_system):
    return Harness(live_system, work_ms=20, stall_seconds=90, log=lambda *args: None)


def assert_clean(result, live_system):
    assert result.lost == 0, result
    assert result.duplicated == 0, result
    assert result.effects == TASKS, result
    assert result.executed >= TASKS, result
    assert_counts_agree(result, TASKS, vhost=live_system.vhost)


def assert_serving(live_system):
    assert probe.delay(uuid.uuid4().hex).get(timeout=60)["hostname"] == live_system.node("main_worker")
    assert heavy_probe.delay(uuid.uuid4().hex, 0).get(timeout=60)["hostname"] == \
        live_system.node("heavy_worker")


@pytest.mark.postgres
@pytest.mark.rabbitmq4
@pytest.mark.parametrize("scenario", ["kill-pool-process", "kill-worker", "restart-workers"])
def test_killed_or_restarted_workers_lose_nothing_and_apply_nothing_twice(
        harness, live_system, scenario):
    result = harness.run(scenario, TASKS)

    assert_clean(result, live_system)
    assert result.notes and "finished before the fault" not in result.notes[0], result.notes
    assert_serving(live_system)


def test_time_limits_fail_the_task_clearly_and_keep_the_worker_serving(harness, live_system):
    result = harness.run("time-limits", TASKS)

    assert_clean(result, live_system)
    assert result.sent == TASKS + 2
    soft, hard = result.notes
    assert "FAILURE SoftTimeLimitReached" in soft and "nothing was applied" in soft
    assert "FAILURE TimeLimitExceeded" in hard
    assert_serving(live_system)


@pytest.mark.postgres
@pytest.mark.rabbitmq4
def test_poison_messages_end_in_the_dead_letter_queue(harness, live_system):
    result = harness.run("poison-message", TASKS)

    assert_clean(result, live_system)
    assert "dead-lettered: ['undecodable', 'unknown-task']" in result.notes[0]
    assert_serving(live_system)


@pytest.mark.postgres
@pytest.mark.rabbitmq4
def test_a_task_that_kills_its_worker_every_time_is_dead_lettered_after_the_limit(
        harness, live_system):
    result = harness.run("crash-every-delivery", TASKS)

    assert_clean(result, live_system)
    assert "dead-lettered: ['crash']" in result.notes[0]
    # Route max_deliveries=3: three starts, the fourth delivery is rejected.
    assert result.notes[1] == "crash task deliveries: 4"
    from apps.testing.models import FaultExecution

    # Exactly three starts of the crash task, whatever else was redelivered.
    assert FaultExecution.objects.filter(run_id=result.run_id, token="crash").count() == 3
    assert result.executed >= TASKS + 3
    assert_serving(live_system)
