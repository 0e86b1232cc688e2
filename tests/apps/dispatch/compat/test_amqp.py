"""Contract tests: the py-amqp internals apps/dispatch/compat/amqp.py exports."""

from __future__ import annotations

import inspect

import amqp
from amqp import Message
from amqp.channel import Channel
from amqp.transport import TCPTransport

from apps.dispatch.compat import amqp as compat


def test_a_transport_keeps_its_read_ahead_bytes_in__read_buffer():
    transport = TCPTransport("127.0.0.1:1")  # not connected: nothing is read
    assert transport._read_buffer == b""
    transport._read_buffer = b"\x01\x00"
    assert compat.take_read_buffer(transport) == b"\x01\x00"
    assert transport._read_buffer == b""


def test_read_frame_and_having_timeout_can_be_replaced_on_the_instance():
    transport = TCPTransport("127.0.0.1:1")
    assert hasattr(transport, "__dict__"), "TCPTransport instances have no __dict__ any more"
    transport.read_frame = lambda unpack=None: "mine"
    assert transport.read_frame() == "mine"


def test_connection_reads_a_frame_through_the_transports_having_timeout_and_read_frame():
    """``Connection.blocking_read`` is where the chunked reader learns who
    reads (the timeout) and hands out frames."""
    calls = []

    class Transport:
        def having_timeout(self, timeout):
            calls.append(("timeout", timeout))
            return _Nothing()

        def read_frame(self):
            calls.append("read_frame")
            return (8, 0, b"")

    class Reads:
        transport = Transport()
        blocking_read = amqp.Connection.blocking_read

        def on_inbound_frame(self, frame):
            calls.append(frame)
            return True

    Reads().blocking_read(0)
    assert calls == [("timeout", 0), "read_frame", (8, 0, b"")]
    source = inspect.getsource(amqp.Connection.drain_events)
    assert "blocking_read(timeout)" in source


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc_info):
        return False


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


def test_the_frame_writer_takes_a_messages_properties_from__serialize_properties():
    """apps/dispatch/encoding.py's EncodedMessage hands py-amqp properties it
    encoded once per batch through this hook."""
    from amqp import method_framing

    source = inspect.getsource(method_framing.frame_writer)
    assert "content._serialize_properties()" in source
