"""Idempotent effects, the delivery counter and delayed dispatch (database only)."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from queueworks.reliability.models import DelayedTask, Effect, TaskDelivery
from apps.testing.models import FaultAccount
from queueworks.reliability.services import (
    DeliveryLimitExceeded,
    delivery_record,
    effect_apply,
)
from apps.testing.services import fault_account_open, fault_effect_apply
from apps.testing.tasks import fault_effect
from tests.support import rabbit
from tests.support.broker import declare_topology_queues, queue_depth
from tests.support.live import wait_for

pytestmark = pytest.mark.django_db


def test_an_effect_is_applied_once_however_often_it_is_delivered():
    run = uuid.uuid4().hex[:12]
    fault_account_open(run_id=run)
    assert fault_effect_apply(run_id=run, token="a") is True
    assert fault_effect_apply(run_id=run, token="a") is False
    assert fault_effect_apply(run_id=run, token="b") is True
    assert FaultAccount.objects.get(run_id=run).balance == 2


def test_a_failing_effect_leaves_no_key_behind():
    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        effect_apply(key="k-fail", apply=boom)
    assert not Effect.objects.filter(key="k-fail").exists()
    assert effect_apply(key="k-fail", apply=lambda: None) is True


def test_first_deliveries_write_nothing():
    assert delivery_record(task_id="t1", task_name="x", redelivered=False, limit=3) == 1
    assert not TaskDelivery.objects.exists()


def test_redeliveries_count_and_past_the_limit_raise_a_reject_with_the_reason():
    assert delivery_record(task_id="t2", task_name="x", redelivered=True, limit=3) == 2
    assert delivery_record(task_id="t2", task_name="x", redelivered=True, limit=3) == 3
    with pytest.raises(DeliveryLimitExceeded) as raised:
        delivery_record(task_id="t2", task_name="x", redelivered=True, limit=3)
    assert raised.value.requeue is False
    assert "delivery limit exceeded" in str(raised.value)
    row = TaskDelivery.objects.get(task_id="t2")
    assert row.deliveries == 4 and row.dead_lettered_at and "limit 3" in row.reason


@pytest.fixture
def quiet_vhost():
    """A vhost with the topology's queues and no consumer: what is published stays."""
    vhost = rabbit.create_vhost("stored")
    try:
        declare_topology_queues(vhost)
        yield vhost
    finally:
        rabbit.delete_vhost(vhost)


@pytest.mark.live
def test_a_long_countdown_is_stored_not_published(settings, quiet_vhost):
    from kombu import Connection

    from projectname.celery import app

    settings.QUEUEWORKS_RELIABILITY_LONG_DELAY_SECONDS = 60
    before = timezone.now()
    with Connection(rabbit.broker_url(quiet_vhost)) as connection:
        producer = app.amqp.Producer(connection)
        result = fault_effect.apply_async(("run", "later"), countdown=3600, producer=producer)
        # Control, on the same channel after it: a short countdown is published.
        control = fault_effect.apply_async(("run", "soon"), countdown=5, producer=producer)
    row = DelayedTask.objects.get(task_id=result.id)
    assert row.task_name == fault_effect.name and row.args == ["run", "later"]
    assert timedelta(seconds=3590) < row.eta - before < timedelta(seconds=3610)
    assert row.dispatched_at is None
    assert not DelayedTask.objects.filter(task_id=control.id).exists()
    # Messages on one channel arrive in order: once the control is queued, a
    # publish of the stored task would be there too.
    depth = wait_for(lambda: queue_depth(quiet_vhost, "main_worker"), 30,
                     message="the control message in main_worker")
    assert depth == 1, f"{depth} messages in main_worker: the stored task was published too"
