"""RabbitMQ least privilege: the project's user reaches the project's
exchanges and queues only, and the live system runs as that user."""

import re
import uuid

import amqp
import pytest
import requests

from queueworks.core.broker_access import APP_USER, project_permissions
from projectname.topology import TOPOLOGY
from tests.support import rabbit

OURS = [*TOPOLOGY.queue_names(), "dead_letter", "celery.pidbox", "reply.celery.pidbox", "celeryev",
        "celery.beat.lock", "main_worker@host.celery.pidbox",
        "1b2c3d4e-0000-4000-8000-000000000000.reply.celery.pidbox",
        "celeryev.1b2c3d4e-0000-4000-8000-000000000000", "celery_delayed_27",
        "celery_delayed_delivery"]
FOREIGN = ["orders", "amq.rabbitmq.trace", "celeryevil", "xmain_worker", "main_workerx", ""]


@pytest.mark.parametrize("kind", ["configure", "write", "read"])
def test_the_patterns_cover_the_project_and_nothing_else(kind):
    pattern = re.compile(getattr(project_permissions(), kind))
    assert [name for name in OURS if not pattern.search(name)] == []
    assert [name for name in FOREIGN if pattern.search(name)] == []


def test_only_write_reaches_the_default_exchange():
    permissions = project_permissions()
    assert re.search(permissions.write, "amq.default")
    assert not re.search(permissions.configure, "amq.default")


@pytest.mark.live
@pytest.mark.rabbitmq4
def test_the_project_user_cannot_touch_a_foreign_queue(live_system):
    connection = amqp.Connection(host=rabbit.AMQP_HOSTPORT, userid=rabbit.APP_AUTH[0],
                                 password=rabbit.APP_AUTH[1], virtual_host=live_system.vhost)
    connection.connect()
    try:
        with pytest.raises(amqp.exceptions.AccessRefused):
            connection.channel().queue_declare(f"foreign-{uuid.uuid4().hex[:6]}", durable=True)
    finally:
        try:
            connection.close()
        except Exception:  # noqa: BLE001  (the refused channel may have closed it)
            pass


@pytest.mark.live
@pytest.mark.rabbitmq4
def test_every_program_of_the_live_system_connects_as_the_project_user(live_system):
    response = requests.get(f"{rabbit.MANAGEMENT_URL}/api/vhosts/{live_system.vhost}/connections",
                            auth=rabbit.AUTH, timeout=10)
    response.raise_for_status()
    users = {connection["user"] for connection in response.json()}
    assert users == {APP_USER}, users


def _with_fair_buckets(queue: str, buckets: int):
    from dataclasses import replace

    return replace(TOPOLOGY, queues=tuple(replace(q, fair_buckets=buckets) if q.name == queue
                                          else q for q in TOPOLOGY.queues))


@pytest.mark.parametrize("kind", ["configure", "write", "read"])
def test_the_patterns_cover_fair_sub_queues_declared_and_left_behind(kind):
    """A fair queue's workers declare and consume <queue>.fair.<n>; migrate_queues
    reads the sub-queues a smaller fair_buckets left (queueworks/limits/fair_stranded.py)."""
    pattern = re.compile(getattr(project_permissions(_with_fair_buckets("bulk", 4)), kind))
    assert [name for name in ("bulk.fair.0", "bulk.fair.3", "bulk.fair.63", "main_worker.fair.2")
            if not pattern.search(name)] == []
    assert [name for name in ("bulk.fair.", "bulk.fair.x", "bulk.fairy.1", "orders.fair.1",
                              "bulk.fair.1.x") if pattern.search(name)] == []


@pytest.mark.live
@pytest.mark.rabbitmq4
def test_the_project_user_declares_a_fair_sub_queue():
    """On a vhost with the project's permissions for a topology with fair
    sharing, its user declares and reads a sub-queue as a worker does."""
    vhost = rabbit.create_vhost("fairperm")
    try:
        permissions = project_permissions(_with_fair_buckets("bulk", 4)).as_json()
        requests.put(f"{rabbit.MANAGEMENT_URL}/api/permissions/{vhost}/{rabbit.APP_AUTH[0]}",
                     json=permissions, auth=rabbit.AUTH, timeout=10).raise_for_status()
        connection = amqp.Connection(host=rabbit.AMQP_HOSTPORT, userid=rabbit.APP_AUTH[0],
                                     password=rabbit.APP_AUTH[1], virtual_host=vhost)
        connection.connect()
        try:
            channel = connection.channel()
            channel.queue_declare("bulk.fair.2", durable=True)
            assert channel.basic_get("bulk.fair.2") is None
        finally:
            connection.close()
    finally:
        rabbit.delete_vhost(vhost)
