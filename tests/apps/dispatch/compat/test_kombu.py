"""Contract test: how kombu's event loop reads a py-amqp connection.

The chunked frame reader keeps read-ahead frames in user space only for
reads made with ``timeout=0``, trusting that kombu's loop keeps reading
(through ``call_soon``) until a read would block."""

from __future__ import annotations

import socket

from kombu import Connection
from kombu.transport import pyamqp

from apps.dispatch.compat import kombu as compat


class _Connection:
    connected = True

    def __init__(self, frames: int):
        self.frames, self.timeouts = frames, []

    def drain_events(self, timeout=None):
        self.timeouts.append(timeout)
        if self.frames == 0:
            raise socket.timeout()
        self.frames -= 1


class _Loop:
    def __init__(self):
        self.ready = []

    def call_soon(self, callback, *args):
        self.ready.append((callback, args))

    def run(self):
        while self.ready:
            callback, args = self.ready.pop(0)
            callback(*args)


def test_the_event_loop_drains_with_timeout_zero_until_a_read_would_block():
    assert compat.SUPPORTED
    transport = pyamqp.Transport(Connection("pyamqp://"))
    connection = _Connection(frames=3)
    loop = _Loop()
    transport.on_readable(connection, loop)
    loop.run()
    assert connection.timeouts == [0, 0, 0, 0]  # three frames, then "would block"


def test_the_transport_registers_the_socket_for_readability_with_on_readable():
    transport = pyamqp.Transport(Connection("pyamqp://"))
    added = []

    class Hub:
        def add_reader(self, fd, callback, *args):
            added.append((fd, callback, args))

    class Conn:
        sock = object()

        class transport:
            raise_on_initial_eintr = False

    transport.register_with_event_loop(Conn(), Hub())
    assert added and added[0][1] == transport.on_readable
