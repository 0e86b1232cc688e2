"""The frames of a batch's ``basic.publish``es, built here and written in large chunks.

py-amqp's own publish (``Channel.basic_publish``) costs, for every message,
a check for pending frames (``drain_events(timeout=0)``, as the connection
announces ``connection.blocked``, py-amqp's default: a socket timeout set
and reset and a read that finds nothing), the method arguments encoded
again and one socket write.  The
bulk enqueue ("batched frames", queueworks/dispatch/confirms.py) builds the same
frames here, encodes the method arguments once per batch and writes many
messages' frames at a time.  The bytes are py-amqp's: tests/queueworks/dispatch/
test_frames.py compares them with ``amqp.method_framing.frame_writer``.
"""

from __future__ import annotations

from struct import pack

from amqp import Message, spec

from queueworks.dispatch.compat.amqp import serialize_properties

# An AMQP short string (a header key, the correlation id) holds at most this many bytes.
SHORTSTR_MAX = 255

_FRAME_END = b"\xce"


def publish_method_payload(arguments: bytes) -> bytes:
    """The method frame's payload of ``basic.publish`` with encoded ``arguments``."""
    return pack(">HH", *spec.Basic.Publish) + arguments


def publish_frames(channel_id: int, method_payload: bytes, message: Message,
                   frame_max: int) -> bytes:
    """The frames py-amqp's frame writer sends for one ``basic.publish`` of ``message``.

    Method frame, content header frame, then the body in frames of at most
    ``frame_max - 8`` bytes (none for an empty body): the same bytes as
    ``amqp.method_framing.frame_writer``, returned instead of written, so a
    batch goes to the socket in a few large writes.
    """
    body = message.body
    if isinstance(body, str):
        body = body.encode(message.properties.setdefault("content_encoding", "utf-8"))
    header = pack(">HHQ", spec.Basic.CLASS_ID, 0, len(body)) + serialize_properties(message)
    parts = [pack(">BHI", 1, channel_id, len(method_payload)), method_payload, _FRAME_END,
             pack(">BHI", 2, channel_id, len(header)), header, _FRAME_END]
    chunk = frame_max - 8
    for start in range(0, len(body), chunk):
        piece = body[start:start + chunk]
        parts += (pack(">BHI", 3, channel_id, len(piece)), piece, _FRAME_END)
    return b"".join(parts)
