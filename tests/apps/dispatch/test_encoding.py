"""apps/dispatch/encoding.py against py-amqp's own encoder and frame writer."""

from __future__ import annotations

import pytest
from amqp import Message
from amqp import spec as amqp_spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps

from apps.dispatch.encoding import BatchEncoder, publish_frames, publish_method_payload

FRAME_MAX = 4096
PROPERTIES = {"content_type": "application/json", "content_encoding": "utf-8",
              "delivery_mode": 2, "priority": 3, "reply_to": "", "timestamp": 1700000000}


class _Capture:
    frame_max = FRAME_MAX
    bytes_sent = 0

    def __init__(self):
        self.written = bytearray()

    def write(self, data):
        self.written += bytes(data)


def _py_amqp_frames(channel_id, arguments, message) -> bytes:
    capture = _Capture()
    frame_writer(capture, capture)(1, channel_id, amqp_spec.Basic.Publish, arguments, message)
    return bytes(capture.written)


@pytest.mark.parametrize("body", [b"", b"[[], {}, null]", b"x" * (3 * FRAME_MAX + 5)])
def test_publish_frames_are_the_bytes_py_amqp_writes(body):
    arguments = dumps("Bssbb", (0, "", "bulk", False, False))
    message = Message(body, application_headers={"id": "t1", "task": "x"},
                      correlation_id="t1", **PROPERTIES)
    ours = publish_frames(7, publish_method_payload(arguments), message, FRAME_MAX)
    assert ours == _py_amqp_frames(7, arguments, message)


def test_batch_encoded_messages_frame_like_plain_messages():
    template = {"lang": "py", "task": "x", "id": "a", "root_id": "a", "parent_id": None,
                "group": None, "argsrepr": "()", "kwargsrepr": "{}", "ignore_result": True}
    encoder = BatchEncoder(template, PROPERTIES)
    arguments = dumps("Bssbb", (0, "", "bulk", False, False))
    for task_id in ("t-1", "t-2"):
        encoded = encoder.message(b"[[], {}, null]", task_id=task_id, kwargsrepr="{'n': 1}")
        # The encoder puts the per-message headers last (table order carries no meaning).
        constant = {k: v for k, v in template.items() if k not in ("id", "root_id", "kwargsrepr")}
        plain = Message(b"[[], {}, null]", correlation_id=task_id, **PROPERTIES,
                        application_headers=dict(constant, id=task_id, root_id=task_id,
                                                 kwargsrepr="{'n': 1}"))
        assert publish_frames(1, publish_method_payload(arguments), encoded, FRAME_MAX) \
            == _py_amqp_frames(1, arguments, plain)
