"""AMQP properties of a batch of task messages, encoded once instead of once per message.

Serializing a Celery message's headers (19 of them, before the optional ones
at their defaults were left out) into an AMQP table in py-amqp's pure-Python
encoder was over half of the bulk producer's time.  Within one
batch the headers differ only in ``id``, ``root_id`` and ``kwargsrepr``, the
correlation id is the task id, everything else is the same.  So the constant
part is encoded once with py-amqp's own encoder and each message adds just its
variable part.  The result is byte-for-byte what py-amqp would send: the first
message of every batch is checked against py-amqp's own encoding, and a batch
whose properties do not match falls back to the plain ``amqp.Message``.
"""

from __future__ import annotations

from collections.abc import Mapping
from struct import pack

from amqp import Message, spec
from amqp.serialization import dumps

from apps.dispatch.compat.amqp import serialize_properties

# Header keys that change from message to message (the rest is the template's).
VARIABLE_KEYS = ("id", "root_id", "kwargsrepr")


class EncodedMessage(Message):
    """An ``amqp.Message`` whose content-header properties are already encoded."""

    def __init__(self, body: bytes, encoded_properties: bytes, properties: dict):
        super().__init__(body, **properties)
        self._encoded_properties = encoded_properties

    def _serialize_properties(self):  # py-amqp's hook (contract: tests/apps/dispatch/compat/)
        return self._encoded_properties


# An AMQP short string (a header key, the correlation id) holds at most this many bytes.
SHORTSTR_MAX = 255


def _shortstr(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > SHORTSTR_MAX:
        raise ValueError("shortstr over 255 bytes")
    return bytes((len(raw),)) + raw


def _longstr_entry(key: str, value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    return _shortstr(key) + b"S" + pack(">I", len(raw)) + raw


class BatchEncoder:
    """Encodes the properties of messages that share a header template.

    ``properties`` are the AMQP basic properties common to the batch (content
    type and encoding, delivery mode, priority, reply_to, timestamp); the
    application headers come from ``headers_template`` with the per-message
    ``id``/``root_id``/``kwargsrepr`` and ``correlation_id`` = task id.
    """

    def __init__(self, headers_template: Mapping[str, object], properties: Mapping[str, object]):
        self.constant = {k: v for k, v in headers_template.items() if k not in VARIABLE_KEYS}
        self.properties = dict(properties)
        order = [name for name, _ in Message.PROPERTIES]
        unexpected = set(self.properties) - {"content_type", "content_encoding", "delivery_mode",
                                             "priority", "reply_to", "timestamp"}
        self.usable = not unexpected and all(
            isinstance(self.properties.get(name), str)
            for name in ("content_type", "content_encoding", "reply_to"))
        if not self.usable:
            return
        # py-amqp writes properties in PROPERTIES order; flags: bit 15 first.
        present = set(self.properties) | {"application_headers", "correlation_id"}
        flags = 0
        for index, name in enumerate(order):
            if name in present and self.properties.get(name, "") is not None:
                flags |= 1 << (15 - index)
        self.head = pack(">H", flags) + dumps(
            "ss", [self.properties["content_type"], self.properties["content_encoding"]])
        self.constant_table = dumps("F", [self.constant])[4:]
        middle = []
        if "delivery_mode" in self.properties:
            middle.append(pack("B", self.properties["delivery_mode"]))
        if self.properties.get("priority") is not None:
            middle.append(pack("B", self.properties["priority"]))
        self.middle = b"".join(middle)
        tail = [_shortstr(self.properties["reply_to"])]
        if self.properties.get("timestamp") is not None:
            tail.append(pack(">Q", int(self.properties["timestamp"])))
        self.tail = b"".join(tail)
        self.checked = False

    def message(self, body: bytes, *, task_id: str, kwargsrepr: str) -> Message:
        headers = dict(self.constant, id=task_id, root_id=task_id, kwargsrepr=kwargsrepr)
        properties = dict(self.properties, application_headers=headers, correlation_id=task_id)
        if not self.usable:
            return Message(body, **properties)
        variable = (_longstr_entry("id", task_id) + _longstr_entry("root_id", task_id)
                    + _longstr_entry("kwargsrepr", kwargsrepr))
        table = self.constant_table + variable
        encoded = b"".join((self.head, pack(">I", len(table)), table, self.middle,
                            _shortstr(task_id), self.tail))
        if not self.checked:
            reference = serialize_properties(Message(body, **properties))
            if reference != encoded:
                self.usable = False
                return Message(body, **properties)
            self.checked = True
        return EncodedMessage(body, encoded, properties)


# -- publish frames --------------------------------------------------------------
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
