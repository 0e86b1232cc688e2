"""The bulk enqueue's producer pieces switched off (DISPATCH_FAST_PATHS_OFF in the
publishing process): Celery's and py-amqp's own behaviour for that step, and
messages both lanes still run."""

from __future__ import annotations

import json
import uuid

import pytest
from amqp import Message

from queueworks.dispatch.services import _MessageBuilder, _task_headers, tasks_enqueue_bulk
from queueworks.dispatch.switches import ENV, PRODUCER_PIECES
from projectname.topology import TOPOLOGY
from tests.support import rabbit
from tests.support.live import wait_for

STANDARD_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _batch(monkeypatch, off: str, count: int = 3) -> list[Message]:
    from apps.testing.tasks import noop
    from projectname.celery import app

    monkeypatch.setenv(ENV, off)
    build = _MessageBuilder(app, noop, 4)
    return [build(f"id-{i}", {"n": i}) for i in range(count)]


def test_slimming_off_sends_every_header_celery_sends_and_its_standard_embed(monkeypatch):
    from apps.testing.tasks import noop
    from projectname.celery import app

    celery_headers, _, (_, _, celery_embed), _ = app.amqp.as_task_v2(
        "id-1", noop.name, args=(), kwargs={"n": 1}, time_limit=noop.time_limit,
        soft_time_limit=noop.soft_time_limit, ignore_result=noop.ignore_result)
    message = _batch(monkeypatch, "message_slimming")[1]
    headers = message.properties["application_headers"]
    assert set(headers) == set(celery_headers)
    for key in ("shadow", "eta", "expires", "group_index", "retries", "timelimit",
                "replaced_task_nesting", "stamped_headers", "stamps"):
        assert headers[key] == celery_headers[key], key
    assert headers["id"] == headers["root_id"] == "id-1"
    assert headers["kwargsrepr"] == "{'n': 1}"
    assert celery_embed == STANDARD_EMBED
    assert json.loads(message.body) == [[], {"n": 1}, STANDARD_EMBED]
    # Slimming on: those headers and the embed are left out.
    slim = _batch(monkeypatch, "")[1]
    assert "retries" not in slim.properties["application_headers"]
    assert json.loads(slim.body) == [[], {"n": 1}, None]


def test_slimming_off_reaches_the_single_enqueues_headers_too():
    from apps.testing.tasks import noop
    from projectname.celery import app

    full = _task_headers(app, noop, "t", args=(), kwargs={}, slim=False)
    assert full["retries"] == 0 and list(full["timelimit"]) == [None, None]
    assert "retries" not in _task_headers(app, noop, "t", args=(), kwargs={})


def _published(vhost: str, queue: str, count: int) -> list:
    import amqp

    wait_for(lambda: rabbit.queue_info(vhost, queue).get("messages") == count or None, 30,
             message=f"{count} messages in {queue}")
    conn = amqp.Connection(host=rabbit.AMQP_HOSTPORT, userid=rabbit.AUTH[0],
                           password=rabbit.AUTH[1], virtual_host=vhost)
    conn.connect()
    try:
        channel = conn.channel()
        return [channel.basic_get(queue, no_ack=True) for _ in range(count)]
    finally:
        conn.close()


@pytest.mark.live
@pytest.mark.parametrize("off, py_amqp_publishes, batch_writes", [
    ("", 0, (1, 3)),                 # 60 small messages: one chunk of the batch's frames
    ("batched_frames", 60, (0, 0)),  # py-amqp's frame writer, one publish per message
])
def test_batched_frames_off_publishes_through_py_amqp(quiet_vhost, monkeypatch, off,
                                                      py_amqp_publishes, batch_writes):
    """Counted on the real pooled connection (its frame writer and its transport's
    write), then the messages read back from the broker."""
    from amqp import spec

    from apps.testing.tasks import noop
    from projectname.celery import app

    tasks_enqueue_bulk(task=noop, kwargs_list=[{"n": -1}], queue="bulk")  # connect, declare
    with app.pool.acquire(block=True) as connection:
        raw = connection.connection
    publishes, writes = [], []
    frame_writer, transport_write = raw.frame_writer, raw.transport.write

    def counting_frame_writer(frame_type, channel, method_sig, *args, **kwargs):
        if method_sig == spec.Basic.Publish:
            publishes.append(channel)
        return frame_writer(frame_type, channel, method_sig, *args, **kwargs)

    def counting_write(data):
        writes.append(len(data))
        return transport_write(data)

    raw.frame_writer, raw.transport.write = counting_frame_writer, counting_write
    monkeypatch.setenv(ENV, off)
    try:
        result = tasks_enqueue_bulk(task=noop, kwargs_list=[{"n": i} for i in range(60)],
                                    queue="bulk")
    finally:
        raw.frame_writer = frame_writer
        del raw.transport.write
    assert len(publishes) == py_amqp_publishes
    assert batch_writes[0] <= len(writes) <= batch_writes[1], writes
    messages = _published(quiet_vhost, "bulk", 61)[1:]
    assert [m.properties["correlation_id"] for m in messages] == result.task_ids
    assert [json.loads(m.body)[1] for m in messages] == [{"n": i} for i in range(60)]


def _probe_rows(tokens):
    from queueworks.core.models import ProbeRun

    rows = list(ProbeRun.objects.filter(token__in=tokens, finished_at__isnull=False))
    return rows if len(rows) == len(tokens) else None


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("off", [*PRODUCER_PIECES, ",".join(PRODUCER_PIECES)])
def test_batches_with_a_producer_piece_off_run_on_both_lanes(live_system, monkeypatch, off):
    """main_worker runs them through Celery's own path, the bulk workers through
    the lean path: every task runs once on the queue it was sent to."""
    from queueworks.core.tasks import probe

    monkeypatch.setenv(ENV, off)
    run = uuid.uuid4().hex[:8]
    bulk_nodes = {live_system.node(w.name) for w in TOPOLOGY.consumers_of("bulk")}
    for queue, nodes in (("main_worker", {live_system.node("main_worker")}),
                         ("bulk", bulk_nodes)):
        tokens = [f"pp-{run}-{queue}-{i}" for i in range(30)]
        tasks_enqueue_bulk(task=probe, kwargs_list=[{"token": t} for t in tokens], queue=queue)
        rows = wait_for(lambda tokens=tokens: _probe_rows(tokens), 90, interval=0.5,
                        message=f"30 probes ran on {queue} with {off} off")
        assert {row.queue for row in rows} == {queue}
        assert {row.hostname for row in rows} <= nodes
        assert all(row.deliveries == 1 for row in rows)
