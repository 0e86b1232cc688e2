"""Fair sub-queues the topology no longer declares: found, and emptied into
the queues a publish would use now, each message where its call belongs
(queueworks/limits/fair_stranded.py; doctor and migrate_queues on the live
system: tests/queueworks/doctor/test_stranded_sub_queues.py)."""

from __future__ import annotations

import json
import uuid

import amqp
import pytest

from queueworks.core.topology import FAIR_SEPARATOR, Queue, Route, Topology, Worker
from queueworks.limits.declaration import FairShare
from queueworks.limits.fair import fair_bucket
from queueworks.limits.fair_stranded import (
    StrandedQueue, _stranded_name, fair_messages_rehome, stranded_fair_queues,
)
from tests.support import rabbit

FAIR_TASK = "apps.testing.tasks.fair_job"


def _topology(buckets: int) -> Topology:
    return Topology(
        queues=(Queue("fq", "fair lane", fair_buckets=buckets), Queue("other", "plain")),
        workers=(Worker("w", ("fq", "other")),),
        routes=(Route(FAIR_TASK, "fq", fair_share=FairShare(key="tenant_id")),),
        schedules=(),
    )


def test_only_sub_queues_past_the_declared_count_are_stranded():
    four = _topology(4)
    assert [_stranded_name(four, name) for name in (
        "fq.fair.0", "fq.fair.3", "fq.fair.4", "fq.fair.63", "fq.fair.x", "fq.fairy.9",
        "other.fair.0", "orders.fair.1", "fq")] == \
        [None, None, "fq", "fq", None, None, "other", None, None]
    # Fair sharing removed: every sub-queue is stranded.
    assert _stranded_name(_topology(0), "fq.fair.0") == "fq"


def test_stranded_sub_queues_fold_into_their_queue_for_alerts_metrics_and_ops():
    from queueworks.core.broker_state import QueueState
    from queueworks.limits.fair import fair_parent, fold_fair_states

    four = _topology(4)
    assert [fair_parent(four, name) for name in (
        "fq.fair.1", "fq.fair.9", "other.fair.0", "fq.fair.x", "fq.fair.", "orders.fair.1",
        "fq")] == ["fq", "fq", "other", None, None, None, None]
    states = {
        "fq": QueueState("fq", True, ready=1, consumers=2, oldest_wait=1.0),
        "fq.fair.0": QueueState("fq.fair.0", True, ready=2, unacked=1, oldest_wait=5.0),
        "fq.fair.5": QueueState("fq.fair.5", True, ready=3, oldest_wait=900.0),
        "other": QueueState("other", True, ready=4),
    }
    folded = fold_fair_states(four, states)
    assert sorted(folded) == ["fq", "other"]
    assert (folded["fq"].ready, folded["fq"].unacked, folded["fq"].consumers,
            folded["fq"].oldest_wait) == (6, 1, 2, 900.0)


def _celery_message(task: str, args: list, kwargs: dict) -> amqp.Message:
    task_id = str(uuid.uuid4())
    return amqp.Message(body=json.dumps([args, kwargs, {}]), content_type="application/json",
                        content_encoding="utf-8", delivery_mode=2, correlation_id=task_id,
                        application_headers={"task": task, "id": task_id, "lang": "py"})


def _drain(channel, name: str) -> list[amqp.Message]:
    taken = []
    while (message := channel.basic_get(name, no_ack=True)) is not None:
        taken.append(message)
    return taken


@pytest.fixture
def fair_vhost():
    vhost = rabbit.create_vhost("stranded")
    yield vhost
    rabbit.delete_vhost(vhost)


@pytest.mark.live
@pytest.mark.rabbitmq4
@pytest.mark.parametrize("management", ["api", "no-api"])
def test_stranded_messages_move_to_the_bucket_a_publish_picks_now(fair_vhost, management,
                                                                  monkeypatch, settings):
    """8 buckets lowered to 4: the calls in fq.fair.4-7 go to fq.fair.<crc32 % 4>,
    a body that does not decode and a task of no fair route to fq itself."""
    import apps.testing.tasks  # noqa: F401 - the fair task's signature names its key

    if management == "no-api":  # the queue list from passive declares instead
        monkeypatch.setattr(settings, "QUEUEWORKS_RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:9")
    url = rabbit.admin_broker_url(fair_vhost)
    connection = rabbit.admin_connection(fair_vhost)
    channel = connection.channel()
    for name in ("fq", "other", *(f"fq{FAIR_SEPARATOR}{n}" for n in range(8))):
        channel.queue_declare(name, durable=True, auto_delete=False)
    tenants = [f"tenant-{n}" for n in range(40)]
    for number, tenant in enumerate(tenants):
        old = f"fq.fair.{fair_bucket(tenant, 8)}"
        call = _celery_message(FAIR_TASK, [], {"tenant_id": tenant, "ms": number})
        channel.basic_publish_confirm(call, exchange="", routing_key=old)
    poison = amqp.Message(body=b"\xff not json", content_type="application/json")
    channel.basic_publish_confirm(poison, exchange="", routing_key="fq.fair.5")
    channel.basic_publish_confirm(_celery_message("apps.testing.tasks.noop", [], {}),
                                  exchange="", routing_key="fq.fair.6")
    before = {name: channel.queue_declare(name, passive=True)[1] for name in
              (f"fq.fair.{n}" for n in range(4, 8))}

    topology = _topology(4)
    found = stranded_fair_queues(connection, topology, broker_url=url)
    assert found == [StrandedQueue(name=f"fq.fair.{n}", parent="fq", ready=before[f"fq.fair.{n}"])
                     for n in range(4, 8)]
    moved: dict[str, int] = {}
    for stranded in found:
        for target, count in fair_messages_rehome(connection, stranded, topology=topology).items():
            moved[target] = moved.get(target, 0) + count
    assert sum(moved.values()) == sum(before.values())
    for n in range(4, 8):
        assert channel.queue_declare(f"fq.fair.{n}", passive=True)[1] == 0
    # Each call now sits where a publish with 4 buckets sends it.
    for n in range(4):
        for message in _drain(channel, f"fq.fair.{n}"):
            tenant = json.loads(message.body)[1]["tenant_id"]
            assert fair_bucket(tenant, 4) == n, (tenant, n)
    in_parent = _drain(channel, "fq")
    assert sorted(m.properties.get("application_headers", {}).get("task", "?")
                  for m in in_parent) == ["?", "apps.testing.tasks.noop"]
    # Properties travel unchanged.
    assert all(m.properties["delivery_mode"] == 2 for m in in_parent if m.properties.get(
        "correlation_id"))
    connection.close()


@pytest.mark.live
def test_a_missing_target_refuses_before_moving_anything(fair_vhost):
    connection = rabbit.admin_connection(fair_vhost)
    channel = connection.channel()
    channel.queue_declare("fq.fair.5", durable=True, auto_delete=False)
    channel.basic_publish_confirm(_celery_message(FAIR_TASK, [], {"tenant_id": "a"}),
                                  exchange="", routing_key="fq.fair.5")
    from queueworks.core.broker_state import BrokerStateError

    with pytest.raises(BrokerStateError, match="fq, fq.fair.0, fq.fair.1 not declared"):
        fair_messages_rehome(connection, StrandedQueue("fq.fair.5", "fq", 1),
                             topology=_topology(2))
    assert channel.queue_declare("fq.fair.5", passive=True)[1] == 1
    connection.close()
