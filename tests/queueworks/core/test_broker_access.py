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
