"""The Task API's outbox on a real broker and database: a record written in
the caller's transaction, marked by the broker's confirm, published again by
the sweeper when it stays unconfirmed."""

from __future__ import annotations

import uuid

import amqp
import pytest
from django.db import transaction

from tests.support import rabbit
from tests.queueworks.dispatch.conftest import quiet_vhost  # noqa: F401  (a fixture)
from tests.support.live import wait_for

TASK = "queueworks.core.tasks.probe"
QUEUE = "main_worker"

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _queued_ids(vhost: str) -> list[str]:
    conn = amqp.Connection(host=rabbit.AMQP_HOSTPORT, userid=rabbit.AUTH[0],
                           password=rabbit.AUTH[1], virtual_host=vhost)
    conn.connect()
    try:
        channel, ids = conn.channel(), []
        try:
            while (message := channel.basic_get(QUEUE, no_ack=True)) is not None:
                ids.append(message.properties["application_headers"]["id"])
        except amqp.exceptions.NotFound:
            pass
        return ids
    finally:
        conn.close()


def _record(task_id):
    from queueworks.taskapi.models import TaskRecord

    return TaskRecord.objects.filter(task_id=task_id).first()


@pytest.mark.rabbitmq4
def test_a_start_is_recorded_in_the_callers_transaction_and_marked_on_confirm(quiet_vhost):
    from queueworks.taskapi.outbox import confirm_marker
    from queueworks.taskapi.services import task_start

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        rolled_back = task_start(task=TASK, kwargs={"token": "rolled-back"})
        assert _record(rolled_back.task_id) is not None  # visible inside the transaction
        raise Rollback
    assert _record(rolled_back.task_id) is None

    ticket = task_start(task=TASK, kwargs={"token": f"ok-{uuid.uuid4().hex[:8]}"})
    record = _record(ticket.task_id)
    assert record is not None
    wait_for(lambda: _record(ticket.task_id).confirmed_at is not None, 20,
             message="confirm marked")
    assert confirm_marker().flush()
    assert _queued_ids(quiet_vhost) == [ticket.task_id]


@pytest.mark.rabbitmq4
def test_the_sweeper_publishes_what_was_never_sent_once_past_its_bound(quiet_vhost):
    """The web process died after the commit and before publishing: only the
    rows exist.  Within the bound nothing is sent; past it, the sweeper sends
    it and marks it."""
    from queueworks.taskapi.outbox import outbox_records_write, outbox_sweep

    task_ids = [str(uuid.uuid4()) for _ in range(3)]
    outbox_records_write(task_name=TASK, queue=QUEUE, priority=None,
                         calls=[(tid, [], {"token": tid[:20]}) for tid in task_ids])
    # One with positional arguments goes out on its own.
    lone = str(uuid.uuid4())
    outbox_records_write(task_name=TASK, queue=QUEUE, priority=3,
                         calls=[(lone, ["positional"], {})])

    assert outbox_sweep().republished == 0  # the default bound is not reached
    assert _queued_ids(quiet_vhost) == []
    outcome = outbox_sweep(older_than=0)
    assert (outcome.republished, outcome.marked, outcome.refused, outcome.left) == (4, 0, 0, 0)
    assert sorted(_queued_ids(quiet_vhost)) == sorted(task_ids + [lone])
    assert all(_record(tid).confirmed_at is not None for tid in task_ids + [lone])
    assert outbox_sweep(older_than=0).republished == 0


def test_the_sweeper_only_marks_tasks_a_worker_has_or_that_were_cancelled(quiet_vhost):
    from django.utils import timezone
    from django_celery_results.models import TaskResult

    from queueworks.taskapi.outbox import outbox_records_write, outbox_sweep
    from queueworks.taskapi.models import TaskRecord

    started, cancelled = str(uuid.uuid4()), str(uuid.uuid4())
    outbox_records_write(task_name=TASK, queue=QUEUE, priority=None,
                         calls=[(started, [], {"token": "s"}), (cancelled, [], {"token": "c"})])
    TaskResult.objects.filter(task_id=started).update(status="STARTED")
    TaskRecord.objects.filter(task_id=cancelled).update(cancelled_at=timezone.now())
    outcome = outbox_sweep(older_than=0)
    assert (outcome.republished, outcome.marked) == (0, 2)
    assert _queued_ids(quiet_vhost) == []


def test_a_refused_message_fails_its_task_with_the_reason(quiet_vhost):
    from django_celery_results.models import TaskResult

    from queueworks.taskapi.outbox import ConfirmMarker, outbox_records_write, outbox_sweep
    from queueworks.taskapi.models import RECORDED_HEADER

    task_id = str(uuid.uuid4())
    outbox_records_write(task_name=TASK, queue=QUEUE, priority=None,
                         calls=[(task_id, [], {"token": "refused"})])
    marker = ConfirmMarker()
    message = amqp.Message(b"{}", application_headers={"id": task_id, RECORDED_HEADER: True})
    marker.refused(message, RuntimeError("PRECONDITION_FAILED - message size too large"))
    assert marker.flush()
    record = _record(task_id)
    assert "message size" in record.publish_error and record.confirmed_at is not None
    assert TaskResult.objects.get(task_id=task_id).status == "FAILURE"
    assert outbox_sweep(older_than=0).republished == 0
