"""Streamed publisher confirms for one batch on a pooled connection.

All messages of a batch go out over one channel in confirm mode and the
confirms are collected once at the end (the broker confirms many messages in
one frame), so a batch costs one round trip however large it is.  Whatever
goes wrong, the caller learns which ids were confirmed and whether any of the
others may have reached the broker (``BulkEnqueueError.written``).
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterable

from amqp import Message
from amqp.exceptions import AMQPError
from amqp.serialization import dumps as amqp_dumps

from queueworks.dispatch.compat import amqp as compat_amqp

from queueworks.dispatch.frames import publish_frames, publish_method_payload
from queueworks.dispatch.switches import switched_off

# basic.publish arguments: ticket, exchange, routing key, mandatory, immediate.
_PUBLISH_SIGNATURE = "Bssbb"
# Read confirms that already arrived every this many messages, so neither
# side's socket buffer fills up during a very large batch.
_DRAIN_EVERY = 1000
# Publish frames are written to the socket in chunks of about this size.
_WRITE_BYTES = 64 * 1024



class BulkEnqueueError(Exception):
    """Some messages of a batch were not confirmed by the broker.

    ``task_ids``: the ids the broker did not confirm (refused, not confirmed
    in time, or cut off by a failure); ``confirmed_ids``: the others.
    ``written``: how many messages may have reached the broker before it went
    wrong (0: nothing was sent, so none of ``task_ids`` can run).
    """

    def __init__(self, message: str, *, task_ids: list[str],
                 confirmed_ids: list[str] = (), written: int):
        super().__init__(message)
        self.task_ids = list(task_ids)
        self.confirmed_ids = list(confirmed_ids)
        self.written = written




class _Confirms:
    """Tracks basic.ack / basic.nack for delivery tags base+1..base+count of one channel."""

    def __init__(self, count: int, base: int = 0):
        self.count = count
        self.base = base
        self.state = bytearray(count + 1)  # 0 pending, 1 acked, 2 nacked
        self.settled = 0
        self.floor = 0  # every tag <= floor (relative) is settled

    def _settle(self, tag: int, value: int) -> None:
        if 0 < tag <= self.count and not self.state[tag]:
            self.state[tag] = value
            self.settled += 1

    def _on(self, value: int):
        def callback(delivery_tag: int, multiple: bool) -> None:
            tag = delivery_tag - self.base
            if multiple:
                for relative in range(self.floor + 1, min(tag, self.count) + 1):
                    self._settle(relative, value)
                self.floor = max(self.floor, tag)
            else:
                self._settle(tag, value)
        return callback

    def tags(self, value: int) -> list[int]:
        return [tag for tag in range(1, self.count + 1) if self.state[tag] == value]


class _ConfirmChannel:
    """One channel in confirm mode per pooled connection, reused by every batch.

    Opening a channel and switching it to confirm mode are two round trips;
    reusing it leaves one per batch (the confirms).  Delivery tags keep
    counting across batches, so each batch tracks its own range.
    """

    def __init__(self, raw_connection):
        self.channel = raw_connection.channel()
        self.channel.confirm_select()
        self.published = 0
        self.current: _Confirms | None = None
        self.channel.events["basic_ack"].add(lambda tag, multiple: self._route(1, tag, multiple))
        self.channel.events["basic_nack"].add(lambda tag, multiple: self._route(2, tag, multiple))

    def _route(self, value: int, tag: int, multiple: bool) -> None:
        if self.current is not None:
            self.current._on(value)(tag, multiple)

    @property
    def usable(self) -> bool:
        return self.channel.is_open

    def close(self) -> None:
        try:
            self.channel.close()
        except Exception:  # noqa: BLE001 - dropping it either way
            pass


def _confirm_channel(raw_connection) -> _ConfirmChannel:
    cached = getattr(raw_connection, "_dispatch_confirm_channel", None)
    if cached is None or not cached.usable:
        cached = _ConfirmChannel(raw_connection)
        raw_connection._dispatch_confirm_channel = cached
    return cached


def _publish_confirmed(raw_connection, messages: Iterable[Message], *, count: int,
                       routing_key: str, task_ids: list[str], confirm_timeout: float) -> None:
    """Publish the ``count`` ``messages`` and wait for every confirm.

    ``messages`` may be a generator: each one is built as it is written."""
    try:
        holder = _confirm_channel(raw_connection)
    except (AMQPError, OSError) as exc:
        # Opening the channel or confirm mode failed: nothing was written.
        raise BulkEnqueueError(
            f"the broker connection failed before any message was written "
            f"({exc.__class__.__name__}: {exc}); nothing was sent",
            task_ids=list(task_ids), written=0) from exc
    channel = holder.channel
    confirms = holder.current = _Confirms(count, base=holder.published)
    complete = False
    written = 0  # messages that may have reached the broker
    failure: Exception | None = None
    try:
        # The frames channel._basic_publish would send (the plain publish even
        # on a connection whose channels wait for a confirm after every
        # message, kombu's confirm_publish), minus the per-message work that
        # is the same for the whole batch: the method arguments are encoded
        # once, the frames of many messages go out in one write of about
        # _WRITE_BYTES, and pending frames are read every _DRAIN_EVERY
        # messages, not before each one.
        transport = raw_connection.transport
        sock = transport.sock
        channel_id = channel.channel_id
        frame_max = raw_connection.frame_max
        method_payload = publish_method_payload(
            amqp_dumps(_PUBLISH_SIGNATURE, (0, "", routing_key, False, False)))
        pending: list[bytes] = []
        pending_bytes = 0

        def flush() -> None:
            nonlocal pending_bytes, written
            if pending:
                # Counted first: a write that fails may have sent part of it.
                written += len(pending)
                transport.write(b"".join(pending))
                raw_connection.bytes_sent += 1  # py-amqp's heartbeat bookkeeping
                holder.published += len(pending)
                pending.clear()
                pending_bytes = 0

        # Another py-amqp than the tested one, or the batched frames switched
        # off in this process: py-amqp's own publish, one message at a time
        # (slower, never wrong).
        batched = compat_amqp.SUPPORTED and "batched_frames" not in switched_off()
        for index, message in enumerate(messages, start=1):
            if batched:
                frames = publish_frames(channel_id, method_payload, message, frame_max)
                pending.append(frames)
                pending_bytes += len(frames)
                if pending_bytes >= _WRITE_BYTES:
                    flush()
            else:
                written += 1
                compat_amqp.basic_publish_no_wait(channel, message, routing_key=routing_key)
                holder.published += 1
            if index % _DRAIN_EVERY == 0:
                flush()
                while select.select([sock], [], [], 0)[0]:
                    raw_connection.drain_events(timeout=0.1)
        flush()
        deadline = time.monotonic() + confirm_timeout
        while confirms.settled < confirms.count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                raw_connection.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        complete = confirms.settled == confirms.count
    except (AMQPError, OSError) as exc:
        # py-amqp's channel and connection errors, socket errors and timeouts:
        # the confirms that arrived so far still count.
        failure = exc
    finally:
        holder.current = None
        if not complete:
            # Late confirms of this batch must not be mistaken for the next one's.
            holder.close()
            raw_connection._dispatch_confirm_channel = None
    nacked = [task_ids[tag - 1] for tag in confirms.tags(2)]
    unconfirmed = [task_ids[tag - 1] for tag in confirms.tags(0)]
    confirmed = [task_ids[tag - 1] for tag in confirms.tags(1)]
    if failure is not None:
        if not written:
            raise BulkEnqueueError(
                f"the broker connection failed before any message was written "
                f"({failure.__class__.__name__}: {failure}); nothing was sent",
                task_ids=list(task_ids), written=0) from failure
        raise BulkEnqueueError(
            f"the broker connection failed after {written} of {count} messages were "
            f"written ({failure.__class__.__name__}: {failure}); {len(confirmed)} were "
            f"confirmed, the other {count - len(confirmed)} may have been published "
            f"or not", task_ids=nacked + unconfirmed, confirmed_ids=confirmed,
            written=written) from failure
    if nacked or unconfirmed:
        raise BulkEnqueueError(
            f"broker refused {len(nacked)} and did not confirm {len(unconfirmed)} "
            f"of {confirms.count} messages within {confirm_timeout}s",
            task_ids=nacked + unconfirmed, confirmed_ids=confirmed, written=count,
        )

