"""The queue a task reports: its routing key, without the delay prefix that
native delayed delivery (quorum queues) adds to a countdown's."""

from types import SimpleNamespace

from kombu.transport.native_delayed_delivery import calculate_routing_key

from queueworks.core.tasks import delivery_queue


def test_a_countdown_on_a_quorum_queue_reports_its_queue():
    delayed = calculate_routing_key(3, "main_worker")
    assert delayed != "main_worker"
    assert delivery_queue(SimpleNamespace(delivery_info={"routing_key": delayed})) == "main_worker"


def test_a_plain_routing_key_is_the_queue():
    assert delivery_queue(SimpleNamespace(delivery_info={"routing_key": "heavy"})) == "heavy"
    assert delivery_queue(SimpleNamespace(delivery_info=None)) == ""
