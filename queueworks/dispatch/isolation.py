"""Send one suspect message alone and read the broker's verdict on it.

When the broker closes the publishing channel over one message, the
publisher (queueworks/dispatch/publisher.py) does not know which of its
unconfirmed messages it was.  Each suspect is sent here, alone, on a
connection of its own: the verdict takes a round trip or more per suspect,
and on that separate connection it never holds up the publisher's channel or
its lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from amqp.exceptions import ChannelError

from queueworks.dispatch.compat.amqp import basic_publish_no_wait

CONFIRMED = "confirmed"
NACKED = "nacked"
REFUSED = "refused"
TIMED_OUT = "timed out"


@dataclass
class Verdict:
    outcome: str
    # The broker's channel error, for REFUSED.
    error: Exception | None = None


class SuspectSender:
    """One connection (from ``connect``, opened on first use) and a confirm
    channel, used by one thread only."""

    def __init__(self, connect):
        self._connect = connect
        self._connection = None
        self._channel = None
        self._answer: str | None = None

    def send(self, message, *, routing_key: str, timeout: float) -> Verdict:
        """Publish ``message`` alone and wait up to ``timeout`` for its verdict.

        Connection errors propagate (the caller puts the suspect back).
        """
        channel = self._confirm_channel()
        self._answer = None
        deadline = time.monotonic() + timeout
        try:
            basic_publish_no_wait(channel, message, exchange="", routing_key=routing_key)
            while self._answer is None and time.monotonic() < deadline:
                try:
                    self._connection.connection.drain_events(timeout=0.5)
                except TimeoutError:
                    continue
        except ChannelError as refused:
            self._discard_channel()
            return Verdict(REFUSED, refused)
        if self._answer is None:
            # A late verdict must not be read as the next suspect's: start afresh.
            self.close()
            return Verdict(TIMED_OUT)
        return Verdict(self._answer)

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - it is gone either way
                pass

    def _confirm_channel(self):
        if self._connection is None:
            self._connection = self._connect()
        if self._channel is None:
            channel = self._connection.connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(lambda *_: self._set(CONFIRMED))
            channel.events["basic_nack"].add(lambda *_: self._set(NACKED))
            self._channel = channel
        return self._channel

    def _set(self, answer: str) -> None:
        self._answer = answer

    def _discard_channel(self) -> None:
        # py-amqp reopens a channel the broker closed (without confirms): close it.
        channel, self._channel = self._channel, None
        if channel is not None and channel.is_open:
            try:
                channel.close()
            except ChannelError:
                pass
