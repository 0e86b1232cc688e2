"""The chunked frame reader: the same frames as py-amqp's own reader, fewer recv calls.

Unit tests over a socket pair (frames arriving whole, split at every byte,
or many per recv), then a real py-amqp connection to the real broker.
"""

from __future__ import annotations

import select
import socket
import struct
import uuid

import amqp
import pytest
from amqp.exceptions import UnexpectedFrame
from amqp.transport import TCPTransport

from apps.dispatch.framereader import CHUNK, ChunkedFrameReader
from tests.support import rabbit


def _frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"


def _transport(sock) -> TCPTransport:
    """A TCPTransport around one end of a socket pair (no connect)."""
    transport = TCPTransport.__new__(TCPTransport)
    transport.sock = sock
    transport.connected = True
    transport._read_buffer = b""
    return transport


class _CountingSocket:
    def __init__(self, sock):
        self.sock, self.calls = sock, 0

    def recv(self, n):
        self.calls += 1
        return self.sock.recv(n)


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


FRAMES = [(1, 1, b"method"), (2, 1, b"header" * 10), (3, 1, b"x" * 5000), (8, 0, b"")]


def test_frames_come_out_whole_and_in_order_from_one_chunk(pair):
    left, right = pair
    transport = _transport(left)
    counting = _CountingSocket(left)
    assert ChunkedFrameReader.install(transport)
    transport.chunked_reader.recv = counting.recv
    right.sendall(b"".join(_frame(*f) for f in FRAMES * 20))
    got = [transport.read_frame() for _ in range(len(FRAMES) * 20)]
    assert got == FRAMES * 20
    # py-amqp's reader needs 3 recv calls per frame: 240 here.
    assert counting.calls < 10


def test_a_frame_split_at_every_byte_is_reassembled_and_timeouts_keep_the_bytes(pair):
    left, right = pair
    transport = _transport(left)
    ChunkedFrameReader.install(transport)
    data = _frame(3, 2, b"payload-0123456789")
    left.settimeout(0)  # what drain_events(timeout=0) does
    for index in range(len(data) - 1):
        right.sendall(data[index:index + 1])
        with pytest.raises(socket.timeout):
            transport.read_frame()
    right.sendall(data[-1:])
    assert transport.read_frame() == (3, 2, b"payload-0123456789")
    with pytest.raises(socket.timeout):
        transport.read_frame()


def test_bytes_py_amqp_already_read_are_kept_and_large_frames_span_chunks(pair):
    left, right = pair
    transport = _transport(left)
    big = b"y" * (3 * CHUNK + 17)
    first = _frame(1, 1, b"already-read")
    transport._read_buffer = first[:5]
    ChunkedFrameReader.install(transport)
    right.sendall(first[5:] + _frame(3, 1, big))
    assert transport.read_frame() == (1, 1, b"already-read")
    assert transport.read_frame() == (3, 1, big)


def test_a_bad_frame_end_and_a_closed_socket_raise_like_py_amqp(pair):
    left, right = pair
    transport = _transport(left)
    ChunkedFrameReader.install(transport)
    right.sendall(_frame(1, 1, b"ok")[:-1] + b"\x00")
    with pytest.raises(UnexpectedFrame):
        transport.read_frame()
    other_left, other_right = socket.socketpair()
    closed = _transport(other_left)
    ChunkedFrameReader.install(closed)
    other_right.close()
    with pytest.raises(OSError, match="unexpectedly closed"):
        closed.read_frame()
    assert closed.connected is False
    other_left.close()


def test_only_plain_tcp_transports_are_changed():
    assert ChunkedFrameReader.install(None) is False
    assert ChunkedFrameReader.install(object()) is False


@pytest.mark.live
def test_a_real_connection_consumes_every_message_through_the_chunked_reader():
    vhost = rabbit.create_vhost("chunked")
    try:
        conn = amqp.Connection(rabbit.AMQP_HOSTPORT, userid=rabbit.AUTH[0],
                               password=rabbit.AUTH[1], virtual_host=vhost)
        conn.connect()
        channel = conn.channel()
        channel.queue_declare("q", durable=False, auto_delete=False)
        bodies = [uuid.uuid4().hex * (1 + i % 7) for i in range(2000)]
        for body in bodies:
            channel.basic_publish(amqp.Message(body, application_headers={"n": len(body)}),
                                  routing_key="q")
        assert ChunkedFrameReader.install(conn.transport)
        received = []
        channel.basic_qos(0, 500, False)
        channel.basic_consume("q", callback=lambda m: (received.append(m.body),
                                                      m.channel.basic_ack(m.delivery_tag)))
        while len(received) < len(bodies):
            conn.drain_events(timeout=10)
        assert received == bodies
        conn.close()
    finally:
        rabbit.delete_vhost(vhost)


def test_the_socket_timeout_is_only_touched_when_the_socket_is_read(pair):
    left, right = pair
    transport = _transport(left)
    changes = []
    transport.sock = _TimeoutSpy(left, changes)
    ChunkedFrameReader.install(transport)
    right.sendall(_frame(1, 1, b"a") + _frame(1, 1, b"b"))
    for expected in (b"a", b"b"):
        with transport.having_timeout(0):
            assert transport.read_frame()[2] == expected
    # The first read went to the socket (timeout set and restored); the second
    # frame was already buffered.
    assert changes == [0, None]
    with pytest.raises(socket.timeout):
        with transport.having_timeout(0):
            transport.read_frame()
    assert changes == [0, None, 0, None]


class _TimeoutSpy:
    """A socket whose settimeout calls are recorded."""

    def __init__(self, sock, changes):
        self._sock, self._changes = sock, changes

    def settimeout(self, value):
        self._changes.append(value)
        self._sock.settimeout(value)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _Reads:
    """Just enough of ``amqp.Connection`` for its own ``blocking_read``."""

    def __init__(self, transport):
        self.transport, self.frames = transport, []

    def on_inbound_frame(self, frame):
        self.frames.append(frame)
        return True

    blocking_read = amqp.Connection.blocking_read


def _delivery(tag: int) -> list[bytes]:
    return [_frame(1, 1, b"basic.deliver" + bytes([tag])), _frame(2, 1, b"header"),
            _frame(3, 1, b"body-%d" % tag)]


@pytest.mark.parametrize("timeout", [None, 0.1])
def test_a_read_outside_the_event_loop_leaves_no_complete_frame_hidden_from_epoll(pair, timeout):
    """The wait for consume-ok (timeout None) and the loop's first drain
    (timeout 0.1) are blocking reads: whatever they do not consume must stay
    where the event loop's poll can see it, in the socket."""
    left, right = pair
    transport = _transport(left)
    ChunkedFrameReader.install(transport)
    consume_ok = _frame(1, 1, b"basic.consume-ok")
    right.sendall(consume_ok + b"".join(b"".join(_delivery(tag)) for tag in (1, 2, 3)))
    reads = _Reads(transport)
    reads.blocking_read(timeout)
    assert reads.frames == [(1, 1, b"basic.consume-ok")]
    readable, _, _ = select.select([left], [], [], 0)
    assert readable or not transport.chunked_reader.frame_buffered(), \
        "complete frames are buffered while the socket reports nothing to read"
    # The event loop's reads (timeout 0) get every delivery, then would block.
    left.settimeout(0)
    while True:
        try:
            reads.blocking_read(0)
        except socket.timeout:
            break
    got = reads.frames[1:]
    assert [frame[2] for frame in got] == [
        payload for tag in (1, 2, 3) for payload in
        (b"basic.deliver" + bytes([tag]), b"header", b"body-%d" % tag)]
