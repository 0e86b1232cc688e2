"""py-amqp internals used by the fast paths.

* ``Message._serialize_properties``: a message's content-header
  properties, for the batch's publish frames (queueworks/dispatch/frames.py);
* ``Channel._basic_publish``: a publish that does not wait for the
  confirm on a confirm_publish connection (queueworks/dispatch/publisher.py,
  queueworks/dispatch/services.py).
"""

from __future__ import annotations

import amqp as _amqp

from queueworks.dispatch.compat import version_supported

TESTED_VERSION = "5.4.2"
SUPPORTED = version_supported(
    "py-amqp", _amqp.__version__, TESTED_VERSION,
    "the publish that does not wait for its confirm (the public basic_publish, which "
    "waits on a confirm_publish connection)")

__all__ = ["SUPPORTED", "TESTED_VERSION", "serialize_properties", "basic_publish_no_wait"]


def serialize_properties(message: _amqp.Message) -> bytes:
    """The encoded content-header properties of ``message``."""
    return message._serialize_properties()


def basic_publish_no_wait(channel, message, exchange: str = "", routing_key: str = "") -> None:
    """Publish without waiting for the broker's confirm (the caller collects it).

    Off the tested version: the public ``basic_publish``, which on a
    confirm_publish connection waits for that confirm (slower, never wrong).
    """
    if SUPPORTED:
        channel._basic_publish(message, exchange=exchange, routing_key=routing_key)
    else:
        channel.basic_publish(message, exchange=exchange, routing_key=routing_key)
