"""queueworks/dispatch/frames.py against py-amqp's own frame writer."""

from __future__ import annotations

import pytest
from amqp import Message
from amqp import spec as amqp_spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps

from queueworks.dispatch.frames import publish_frames, publish_method_payload

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
