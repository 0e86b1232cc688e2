"""py-amqp internals used by the fast paths.

* ``Message._serialize_properties``: a message's content-header
  properties, for the batch's publish frames (queueworks/dispatch/frames.py);
* ``Channel._basic_publish``: a publish that does not wait for the
  confirm on a confirm_publish connection (queueworks/dispatch/publisher.py,
  queueworks/dispatch/services.py);
* ``publish_without_reading(connection)``: the ``connection.blocked``
  capability that makes ``_basic_publish`` read pending frames before every
  publish, turned off after connecting, for the confirming publisher whose
  socket only its reader thread may read (queueworks/dispatch/publisher.py).
  Stock path: no confirming publisher (``process_publisher.publisher_supported``
  is False; the Task API publishes through kombu and waits for the confirm);
* ``watch_settlements(channel, on_settled)``: a live channel's ``basic_ack``
  and ``basic_reject`` wrapped, which every kombu ``Message.ack``/``reject``/
  ``requeue`` goes through, so the lean path knows when a message handed to
  Celery's own code is settled (queueworks/dispatch/lean.py).  Stock path: no
  lean path (Celery's default strategy, one ack per message).

Both rewrite a live py-amqp object; on another py-amqp version they raise
rather than run half-understood, and their callers check ``SUPPORTED`` first.
"""

from __future__ import annotations

import amqp as _amqp

from queueworks.dispatch.compat import version_supported

TESTED_VERSION = "5.4.2"
SUPPORTED = version_supported(
    "py-amqp", _amqp.__version__, TESTED_VERSION,
    "the publish that does not wait for its confirm (the public basic_publish, which "
    "waits on a confirm_publish connection); the Task API's confirming publisher (kombu's "
    "publish, waiting for each confirm); the bulk lane's lean path (Celery's default "
    "strategy, one ack per message)")

__all__ = ["SUPPORTED", "TESTED_VERSION", "serialize_properties", "basic_publish_no_wait",
           "publish_without_reading", "watch_settlements", "Settlements"]


class UntestedVersion(RuntimeError):
    """A live py-amqp object would be rewritten on a version nobody tested."""


def _require_tested(what: str) -> None:
    if not SUPPORTED:
        raise UntestedVersion(
            f"{what} rewrites a live py-amqp object and is tested with py-amqp "
            f"{TESTED_VERSION} only ({_amqp.__version__} is installed): check SUPPORTED first")


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


def publish_without_reading(connection: _amqp.Connection) -> None:
    """Publishes on ``connection`` no longer read the socket first.

    py-amqp's publish reads pending frames (``drain_events(timeout=0)``)
    before every message when the connection announced the
    ``connection.blocked`` capability, py-amqp's default.  A connection whose
    socket one reader thread owns must not be read by a publishing thread
    too: the capability is turned off in the connection's client properties
    once connected (the broker still sends ``connection.blocked``; the reader
    thread reads it, as every other frame).
    """
    _require_tested("publish_without_reading")
    properties = connection.client_properties
    capabilities = dict(properties.get("capabilities", {}), **{"connection.blocked": False})
    connection.client_properties = dict(properties, capabilities=capabilities)


class Settlements:
    """A channel's own ``basic_ack``/``basic_reject``, while they are watched."""

    def __init__(self, channel, on_settled):
        self.channel = channel
        self.ack = channel.basic_ack
        self.reject = channel.basic_reject

        def watched_ack(delivery_tag, multiple=False, **kwargs):
            on_settled(delivery_tag)
            return self.ack(delivery_tag, multiple, **kwargs)

        def watched_reject(delivery_tag, requeue, **kwargs):
            on_settled(delivery_tag)
            return self.reject(delivery_tag, requeue, **kwargs)

        channel.basic_ack = watched_ack
        channel.basic_reject = watched_reject

    def restore(self) -> None:
        """The channel's own methods back."""
        self.channel.basic_ack = self.ack
        self.channel.basic_reject = self.reject


def watch_settlements(channel, on_settled) -> Settlements:
    """Call ``on_settled(delivery_tag)`` whenever a message of ``channel`` is
    acknowledged or rejected (kombu's ``Message.ack``, ``reject`` and
    ``requeue`` all call the channel's ``basic_ack``/``basic_reject``).

    Returns the channel's own methods, to settle without being watched, and
    ``restore()``.
    """
    _require_tested("watch_settlements")
    return Settlements(channel, on_settled)
