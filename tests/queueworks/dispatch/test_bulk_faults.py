"""Bulk enqueue when the broker fails mid-batch: whatever it answers is true.

A private vhost nobody consumes, so the queue shows exactly what reached the
broker; the connection is cut from either side while the batch is written.
"""

from __future__ import annotations

import select
import uuid

import amqp
import pytest

from queueworks.dispatch import confirms, messages
from tests.support import rabbit
from tests.support.live import wait_for

TASK = "queueworks.core.tasks.probe"
QUEUE = "main_worker"
COUNT = 600
CUT_AT = 300  # the messages before it went out in earlier writes


def _admin(vhost: str) -> amqp.Connection:
    conn = amqp.Connection(host=rabbit.AMQP_HOSTPORT, userid=rabbit.AUTH[0],
                           password=rabbit.AUTH[1], virtual_host=vhost)
    conn.connect()
    return conn


def _queued_ids(vhost: str, queue: str) -> list[str]:
    conn = _admin(vhost)
    try:
        channel, ids = conn.channel(), []
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            ids.append(message.properties["application_headers"]["id"])
        return ids
    finally:
        conn.close()


def _cut_mid_batch(monkeypatch, vhost: str, how: str) -> list[int]:
    """Cut the publishing connection while message CUT_AT is built."""
    built, connections = [0], []
    original_message = messages._MessageBuilder.message
    original_channel = confirms._confirm_channel

    def remember_channel(raw_connection):
        connections.append(raw_connection)
        return original_channel(raw_connection)

    def message(self, task_id, prepared):
        built[0] += 1
        if built[0] == CUT_AT:
            if how == "client-socket":
                connections[-1].sock.shutdown(2)
            else:
                for name in rabbit.vhost_connections(vhost):
                    rabbit.close_connection(name)
                # The broker's connection.close is on its way.
                assert select.select([connections[-1].sock], [], [], 10)[0]
        return original_message(self, task_id, prepared)

    monkeypatch.setattr(messages._MessageBuilder, "message", message)
    monkeypatch.setattr(confirms, "_confirm_channel", remember_channel)
    return built


def _warm_up(vhost: str) -> None:
    """Open the pooled connection first, so the broker lists it."""
    from queueworks.dispatch.services import tasks_enqueue_bulk

    tasks_enqueue_bulk(task=TASK, kwargs_list=[{"token": "warm-up"}])
    wait_for(lambda: rabbit.vhost_connections(vhost), 20, message="connection listed")
    assert _queued_ids(vhost, QUEUE)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["client-socket", "broker-close"])
def test_a_bulk_start_cut_mid_batch_answers_the_truth(quiet_vhost, monkeypatch, how):
    """The rows are the outbox: the batch is accepted, the part the broker did
    not confirm is published again by the sweeper, and every task id ends up
    on its queue."""
    from django_celery_results.models import TaskResult

    from queueworks.taskapi.bulk import tasks_start_bulk
    from queueworks.taskapi.models import TaskRecord

    _warm_up(quiet_vhost)
    _cut_mid_batch(monkeypatch, quiet_vhost, how)
    tokens = [f"cut-{uuid.uuid4().hex[:8]}-{i}" for i in range(COUNT)]
    result = tasks_start_bulk(task=TASK, kwargs_list=[{"token": t} for t in tokens])
    ids = set(result.task_ids)
    assert len(ids) == COUNT
    assert TaskRecord.objects.filter(task_id__in=ids).count() == COUNT
    assert TaskResult.objects.filter(task_id__in=ids, status="PENDING").count() == COUNT
    unconfirmed = set(TaskRecord.objects.filter(task_id__in=ids, confirmed_at__isnull=True)
                      .values_list("task_id", flat=True))
    assert unconfirmed, "the cut left nothing unconfirmed: it came too late to test anything"
    assert set(result.pending_ids) == unconfirmed
    queued_before = _queued_ids(quiet_vhost, QUEUE)
    assert 0 < len(set(queued_before) & ids) < COUNT  # part of the batch was published

    monkeypatch.undo()
    from queueworks.taskapi.outbox import outbox_sweep

    outcome = outbox_sweep(older_than=0)
    assert outcome.republished == len(unconfirmed)
    assert not TaskRecord.objects.filter(task_id__in=ids, confirmed_at__isnull=True).exists()
    queued = set(queued_before) | set(_queued_ids(quiet_vhost, QUEUE))
    assert ids <= queued


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_channel_error_before_anything_is_sent_leaves_the_batch_to_the_outbox(quiet_vhost):
    """The routed queue exists with other arguments: the declare is refused
    (a py-amqp channel error) and nothing is published.  The rows were
    committed first, so the batch is accepted, every id unpublished; the
    sweeper finds the broker refusing each message and records the reason."""
    from django_celery_results.models import TaskResult

    from queueworks.taskapi.bulk import tasks_start_bulk
    from queueworks.taskapi.models import TaskRecord
    from queueworks.taskapi.outbox import outbox_sweep

    conn = _admin(quiet_vhost)
    conn.channel().queue_declare(QUEUE, durable=True, auto_delete=False,
                                 arguments={"x-max-length": 7})
    conn.close()
    tokens = [f"refused-{uuid.uuid4().hex[:8]}-{i}" for i in range(5)]
    result = tasks_start_bulk(task=TASK, kwargs_list=[{"token": t} for t in tokens])
    assert set(result.pending_ids) == set(result.task_ids) and len(result.task_ids) == 5
    assert TaskRecord.objects.filter(kwargs__token__in=tokens, confirmed_at__isnull=True
                                     ).count() == 5
    assert _queued_ids(quiet_vhost, QUEUE) == []

    outcome = outbox_sweep(older_than=0)
    assert outcome.refused == 5 and outcome.republished == 0, outcome
    assert set(TaskResult.objects.filter(task_id__in=result.task_ids)
               .values_list("status", flat=True)) == {"FAILURE"}
    assert _queued_ids(quiet_vhost, QUEUE) == []


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["client-socket", "broker-close"])
def test_bulk_enqueue_cut_mid_batch_names_what_may_have_been_sent(quiet_vhost, monkeypatch,
                                                                  how):
    from queueworks.dispatch.services import BulkEnqueueError, tasks_enqueue_bulk

    _warm_up(quiet_vhost)
    _cut_mid_batch(monkeypatch, quiet_vhost, how)
    with pytest.raises(BulkEnqueueError) as caught:
        tasks_enqueue_bulk(task=TASK, kwargs_list=[{"token": str(i)} for i in range(COUNT)])
    error = caught.value
    assert "may have been published" in str(error)
    assert 0 < error.written <= COUNT
    queued = set(_queued_ids(quiet_vhost, QUEUE))
    # Every id that reached the queue is confirmed or named as maybe published.
    all_ids = set(error.confirmed_ids) | set(error.task_ids)
    assert len(all_ids) == COUNT
    assert queued <= all_ids
    assert set(error.confirmed_ids) <= queued


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_while_the_confirm_channel_opens_says_nothing_was_sent(
        quiet_vhost, monkeypatch):
    """The pooled connection passed its check, then the broker dropped it before
    the confirm channel was open: nothing can have been published, and the
    caller is told so (no raw socket error, no "may have been published")."""
    from queueworks.dispatch.services import BulkEnqueueError, tasks_enqueue_bulk

    _warm_up(quiet_vhost)
    original_channel = confirms._ConfirmChannel.__init__

    def cut_then_open(self, raw_connection):
        raw_connection.sock.shutdown(2)
        original_channel(self, raw_connection)

    monkeypatch.setattr(confirms._ConfirmChannel, "__init__", cut_then_open)
    monkeypatch.setattr(confirms, "_confirm_channel",
                        lambda raw: confirms._ConfirmChannel(raw))
    with pytest.raises(BulkEnqueueError) as caught:
        tasks_enqueue_bulk(task=TASK, kwargs_list=[{"token": str(i)} for i in range(20)])
    assert caught.value.written == 0 and "nothing was sent" in str(caught.value)
    assert len(caught.value.task_ids) == 20
    assert _queued_ids(quiet_vhost, QUEUE) == []
