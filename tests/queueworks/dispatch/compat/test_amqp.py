"""Contract tests: the py-amqp internals queueworks/dispatch/compat/amqp.py exports."""

from __future__ import annotations

import inspect

from amqp import Message
from amqp.channel import Channel

from queueworks.dispatch.compat import amqp as compat


def test_message_serializes_its_properties():
    encoded = compat.serialize_properties(Message(b"x", content_type="application/json",
                                                  delivery_mode=2, headers={"id": "i"}))
    assert isinstance(encoded, bytes) and b"application/json" in encoded


def test_the_plain_publish_has_the_signature_the_publishers_call():
    parameters = inspect.signature(Channel._basic_publish).parameters
    assert list(parameters)[:4] == ["self", "msg", "exchange", "routing_key"]
    # With confirm_publish py-amqp replaces basic_publish on the instance;
    # _basic_publish stays the publish that does not wait.
    assert Channel.basic_publish is Channel._basic_publish
    assert "self.basic_publish = self.basic_publish_confirm" in inspect.getsource(
        Channel.__init__)


def test_basic_publish_no_wait_uses_the_plain_publish():
    sent = []

    class Spy:
        def _basic_publish(self, message, exchange="", routing_key=""):
            sent.append(("plain", routing_key))

        def basic_publish(self, message, exchange="", routing_key=""):
            sent.append(("confirmed", routing_key))

    compat.basic_publish_no_wait(Spy(), Message(b"x"), routing_key="q")
    assert sent == [("plain", "q")]


def test_the_batch_writer_uses_public_connection_and_transport_attributes():
    """queueworks/dispatch/confirms.py writes a batch's frames itself through these
    public (non-underscore) py-amqp names; pinned so a change shows here."""
    from amqp import Connection
    from amqp.transport import TCPTransport

    assert Connection.bytes_sent == 0  # class default; the heartbeat check reads it
    assert "self.bytes_sent" in inspect.getsource(Connection.heartbeat_tick)
    assert "self.frame_max = frame_max" in inspect.getsource(Connection.__init__)
    assert list(inspect.signature(TCPTransport.write).parameters) == ["self", "s"]
    from amqp.abstract_channel import AbstractChannel

    assert issubclass(Channel, AbstractChannel)
    assert "self.channel_id = channel_id" in inspect.getsource(AbstractChannel.__init__)


def test_the_plain_publish_reads_pending_frames_only_when_connection_blocked_is_announced():
    """``publish_without_reading`` turns that capability off: the read it
    prevents is this one."""
    source = inspect.getsource(Channel._basic_publish)
    check = source.index("client_properties.get('capabilities', {})")
    assert "capabilities.get('connection.blocked', False)" in source
    assert check < source.index("self.connection.drain_events(timeout=0)")


def test_publish_without_reading_turns_connection_blocked_off_and_keeps_the_rest():
    from amqp import Connection

    connection = Connection("127.0.0.1:1", client_properties={
        "capabilities": {"connection.blocked": True, "consumer_cancel_notify": True}})
    compat.publish_without_reading(connection)
    assert connection.client_properties["capabilities"] == {
        "connection.blocked": False, "consumer_cancel_notify": True}
    assert connection.client_properties["product"] == "py-amqp"


class _SpyChannel:
    no_ack_consumers = None

    def __init__(self):
        self.calls = []

    def basic_ack(self, delivery_tag, multiple=False):
        self.calls.append(("ack", delivery_tag, multiple))

    def basic_reject(self, delivery_tag, requeue):
        self.calls.append(("reject", delivery_tag, requeue))


def test_kombu_messages_settle_through_the_channels_basic_ack_and_basic_reject():
    """``watch_settlements`` sees every settlement because kombu's Message
    looks ``basic_ack``/``basic_reject`` up on its channel at each call."""
    from kombu.message import Message as KombuMessage

    channel, settled = _SpyChannel(), []
    settlements = compat.watch_settlements(channel, settled.append)
    for tag, settle in ((1, "ack"), (2, "reject"), (3, "requeue")):
        message = KombuMessage(body=b"x", delivery_tag=tag, channel=channel)
        getattr(message, settle)()
    assert settled == [1, 2, 3]
    assert channel.calls == [("ack", 1, False), ("reject", 2, False), ("reject", 3, True)]
    settlements.ack(4, True)  # the channel's own: not watched
    assert settled == [1, 2, 3] and channel.calls[-1] == ("ack", 4, True)
    settlements.restore()
    KombuMessage(body=b"x", delivery_tag=5, channel=channel).ack()
    assert settled == [1, 2, 3] and channel.calls[-1] == ("ack", 5, False)


def test_py_amqps_channel_settles_with_the_arguments_the_watch_passes_on():
    assert list(inspect.signature(Channel.basic_ack).parameters)[:3] == [
        "self", "delivery_tag", "multiple"]
    assert list(inspect.signature(Channel.basic_reject).parameters)[:3] == [
        "self", "delivery_tag", "requeue"]


def test_another_version_refuses_to_rewrite_a_live_object(monkeypatch):
    import pytest

    monkeypatch.setattr(compat, "SUPPORTED", False)
    with pytest.raises(compat.UntestedVersion, match="publish_without_reading"):
        compat.publish_without_reading(object())
    channel = _SpyChannel()
    with pytest.raises(compat.UntestedVersion, match="watch_settlements"):
        compat.watch_settlements(channel, print)
    assert "basic_ack" not in vars(channel)
