"""The 4.x pass's broker is what it claims: RabbitMQ 4 with 4.3's defaults,
and the topology is declared on it as production declares it (quorum
queues with an explicit delivery limit and dead-letter target)."""

import amqp
import pytest
import requests

from projectname.topology import TOPOLOGY
from queueworks.core.topology import DEAD_LETTER_EXCHANGE, QUORUM_DELIVERY_LIMIT
from tests.support import rabbit

pytestmark = [
    pytest.mark.live, pytest.mark.rabbitmq4,
    pytest.mark.only_on_broker("rabbitmq4"),
]


def test_the_node_is_rabbitmq_4_and_refuses_transient_non_exclusive_queues(broker_vhost):
    overview = requests.get(f"{rabbit.MANAGEMENT_URL}/api/overview", auth=rabbit.AUTH, timeout=10)
    assert overview.json()["rabbitmq_version"].startswith("4."), overview.json()
    connection = amqp.Connection(host=rabbit.AMQP_HOSTPORT, userid=rabbit.AUTH[0],
                                 password=rabbit.AUTH[1], virtual_host=broker_vhost)
    connection.connect()
    try:
        with pytest.raises(amqp.exceptions.AMQPError) as refused:
            connection.channel().queue_declare("test.transient", durable=False, exclusive=False,
                                               auto_delete=False)
        assert "transient_nonexcl_queues" in str(refused.value) or "541" in str(refused.value)
    finally:
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - RabbitMQ may have closed it with the 541
            pass


def test_every_topology_queue_is_a_quorum_queue_with_its_limit_and_dead_letter_target(
        live_system):
    for queue in TOPOLOGY.queues:
        if not queue.dead_letter:
            continue
        live = rabbit.queue_info(live_system.vhost, queue.name)
        assert live["type"] == "quorum", (queue.name, live["type"])
        assert live["arguments"]["x-delivery-limit"] == QUORUM_DELIVERY_LIMIT, queue.name
        assert live["arguments"]["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE, queue.name
