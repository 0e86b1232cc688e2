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
