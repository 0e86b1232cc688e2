"""A chunked frame reader for the consumer's py-amqp connection.

py-amqp's ``TCPTransport.read_frame`` reads exactly what it needs: the 7-byte
frame header, then the payload, then the frame-end octet.  A task message is
three frames (method, content header, body), so every message costs nine
``recv`` system calls.  Profiled on the bulk lane that was the single largest
item of the worker's time.

``ChunkedFrameReader`` reads whatever the socket holds, up to 64 KiB at a
time, and cuts frames out of that buffer: with a prefetch window of 128
messages one ``recv`` usually brings dozens of them.

Only the event loop's own reads take more than they need.  kombu's loop
reads with ``drain_events(timeout=0)`` and keeps calling it until a read
would block, so it goes back to waiting for the socket to be readable only
when the buffer holds no complete frame.  Every other read (the wait for
``consume-ok``, the loop's first drain, ``basic_qos`` from a timer: all
with a timeout other than 0) takes exactly the bytes of the frame it is
after, as py-amqp does: a frame that was not asked for stays in the socket,
where the loop's poll sees it.  Otherwise it would sit complete in the buffer
until some unrelated frame (a heartbeat, a minute later) woke the loop.
Timeouts behave as in py-amqp: ``socket.timeout`` when nothing complete
arrives in time, and bytes read so far stay buffered for the next call.

py-amqp also sets the socket's timeout around each frame read (``having_timeout``,
``fcntl`` calls); while a complete frame is buffered the reader needs no
socket, so that is skipped too.
"""

from __future__ import annotations

import errno
import socket
from struct import unpack_from

from amqp.exceptions import UnexpectedFrame

from apps.dispatch.compat import amqp as compat_amqp
from apps.dispatch.compat import kombu as compat_kombu
from apps.dispatch.compat.amqp import TCPTransport

CHUNK = 65536
FRAME_END = 0xCE
_WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK)
# py-amqp keeps ``connected`` on these errors (transport._UNAVAIL).
_UNAVAILABLE = {errno.EAGAIN, errno.EINTR, errno.ENOENT, errno.EWOULDBLOCK}


class _Unchanged:
    """A context manager that does nothing (the socket's timeout stays as it is)."""

    __slots__ = ()

    def __enter__(self):
        return None

    def __exit__(self, *exc_info):
        return False


_UNCHANGED = _Unchanged()


class ChunkedFrameReader:
    """``read_frame`` for one connected py-amqp ``TCPTransport``."""

    def __init__(self, transport: TCPTransport):
        self.transport = transport
        self.recv = transport.sock.recv
        # Anything py-amqp has read but not yet consumed comes first.
        self.buffer = bytearray(compat_amqp.take_read_buffer(transport))
        self.pos = 0
        # Reads in chunks only while the event loop drains (timeout 0).
        self.chunked = True

    @classmethod
    def install(cls, transport) -> bool:
        """Replace ``transport.read_frame``; False (nothing done) for SSL or
        others, and on py-amqp or kombu versions it was not tested with."""
        if type(transport) is not TCPTransport or transport.sock is None:
            return False
        if not (compat_amqp.SUPPORTED and compat_kombu.SUPPORTED):
            return False
        if getattr(transport, "chunked_reader", None) is None:
            reader = transport.chunked_reader = cls(transport)
            transport.read_frame = reader.read_frame
            reader.socket_timeout = transport.having_timeout
            transport.having_timeout = reader.having_timeout
        return True

    def having_timeout(self, timeout):
        """py-amqp sets the socket's timeout around every frame read (two
        ``fcntl`` calls each way when it differs).  A frame already in the
        buffer needs no socket at all, so its timeout is left alone.

        The timeout also tells who reads: 0 is kombu's event loop (which
        drains until a read would block), anything else a caller waiting for
        one reply."""
        self.chunked = timeout == 0
        if self.frame_buffered():
            return _UNCHANGED
        return self.socket_timeout(timeout)

    def frame_buffered(self) -> bool:
        buffer, pos = self.buffer, self.pos
        if len(buffer) - pos < 7:
            return False
        return len(buffer) > pos + 7 + unpack_from(">I", buffer, pos + 3)[0]

    def read_frame(self, unpack=None):  # py-amqp's signature
        buffer = self.buffer
        while True:
            pos = self.pos
            if len(buffer) - pos >= 7:
                frame_type, channel, size = unpack_from(">BHI", buffer, pos)
                end = pos + 7 + size
                if len(buffer) > end:
                    if buffer[end] != FRAME_END:
                        raise UnexpectedFrame(
                            f"Received frame_end {buffer[end]:#04x} while expecting 0xce")
                    payload = bytes(buffer[pos + 7:end])
                    end += 1
                    if end == len(buffer):
                        buffer.clear()
                        self.pos = 0
                    elif end >= CHUNK:
                        del buffer[:end]
                        self.pos = 0
                    else:
                        self.pos = end
                    return frame_type, channel, payload
                needed = end + 1 - len(buffer)
            else:
                needed = 7 - (len(buffer) - pos)
            self._fill(needed)

    def _fill(self, needed: int) -> None:
        try:
            chunk = self.recv(max(CHUNK, needed) if self.chunked else needed)
        except socket.timeout:
            raise
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return
            if exc.errno in _WOULD_BLOCK:  # a non-blocking read (timeout=0)
                raise socket.timeout() from None
            if exc.errno not in _UNAVAILABLE:
                self.transport.connected = False
            raise
        if not chunk:
            self.transport.connected = False
            raise OSError("Server unexpectedly closed connection")
        self.buffer += chunk

