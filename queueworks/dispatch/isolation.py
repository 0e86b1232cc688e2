"""Find the message the broker refused: each suspect sent alone, off the lock.

When the broker closes the publishing channel over one message, the
publisher (queueworks/dispatch/publisher.py) does not know which of its
unconfirmed messages it was.  Each suspect is sent here, alone, on a
connection of its own: the verdict takes a round trip or more per suspect,
and on that separate connection it never holds up the publisher's channel or
its lock.  ``SuspectSender`` sends one and reads the verdict;
``SuspectIsolation`` is the publisher's thread that works through them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from amqp.exceptions import ChannelError

from queueworks.dispatch.compat.amqp import basic_publish_no_wait

logger = logging.getLogger("queueworks.dispatch.publisher")
# How long one suspect message may take to be confirmed; then it goes back to
# the publishing channel (and is re-sent there).
ISOLATE_CONFIRM_SECONDS = 10.0

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


class SuspectIsolation:
    """The publisher's isolating thread (a mixin of ConfirmingPublisher: it
    works on its lock, its unconfirmed messages and its suspects)."""

    def _isolate(self) -> None:
        """Each suspect alone on a connection of its own: the refused one
        fails, the others are confirmed; a suspect without a verdict goes
        back to the publishing channel."""
        sender = SuspectSender(self._connect)
        try:
            while True:
                with self._lock:
                    seq = next(iter(self._suspects), None)
                    if seq is None or self._closed:
                        self._isolator = None  # under the lock: the next error starts one
                        return
                    entry = self._pending.get(seq)
                    if entry is None:
                        self._suspects.pop(seq)
                        continue
                try:
                    verdict = sender.send(entry.message, routing_key=entry.routing_key,
                                          timeout=ISOLATE_CONFIRM_SECONDS)
                except Exception as exc:  # noqa: BLE001 - back to the channel, not dropped
                    logger.warning("Could not isolate the refused task message (%s); the %d "
                                   "suspects are sent again as usual.", exc, len(self._suspects))
                    with self._lock:
                        self._release_suspects(list(self._suspects))
                        self._isolator = None
                    return
                with self._lock:
                    self._judge(seq, verdict)
        finally:
            sender.close()

    def _judge(self, seq: int, verdict) -> None:
        self._suspects.pop(seq, None)
        if seq not in self._pending:
            return
        if verdict.outcome == CONFIRMED:
            message = self._pending.pop(seq).message
            self._settled.notify_all()
            if self.on_confirmed is not None:
                self._notify(self.on_confirmed, [message])
        elif verdict.outcome == REFUSED:
            self._fail(seq, verdict.error)
        elif verdict.outcome == NACKED:
            self._retry_nacked(seq)
        else:
            self._release_suspects([seq])

    def _release_suspects(self, seqs: list[int]) -> None:
        """Back to the publishing channel (or the next one), sent again there."""
        for seq in seqs:
            self._suspects.pop(seq, None)
            if seq in self._pending and self._channel is not None:
                self._transmit(seq)
