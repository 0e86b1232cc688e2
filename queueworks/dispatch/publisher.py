"""Publish one task from a request without waiting for the broker's confirm.

A persistent message on a durable queue is confirmed by RabbitMQ only after
it is on disk: measured here 0.5 ms median but 3.5 ms p99 with a confirm wait
after every message (kombu's ``confirm_publish``), which is most of what an
enqueue adds to a request.  ``ConfirmingPublisher`` keeps the confirms and
drops the wait:

* one broker connection per process (a web worker), opened once and reused,
  with one channel in confirm mode;
* ``publish()`` writes the message and returns; the message is kept in memory
  until its ``basic.ack`` arrives, which a background thread reads, and
  ``on_confirmed`` is told (the Task API marks its outbox row there);
* delivery tags belong to one channel: every new channel (after a lost
  connection, from either thread) sends every unconfirmed message again, in
  order, and only that channel's acks settle them (a message confirmed just
  before the loss may then arrive twice: tasks are idempotent in this
  project, see queueworks/reliability);
* a ``basic.nack`` re-publishes the message (up to ``MAX_ATTEMPTS``);
* a channel error (the broker refusing one message: over its
  ``max_message_size``, an invalid property) is not a lost connection: each
  message unconfirmed on that channel is sent again alone, on a connection
  of its own, by a background thread (queueworks/dispatch/isolation.py); the
  one the broker refuses again fails (``PublishRefused`` for a caller waiting
  on it, CRITICAL log with its task id, ``on_failed``) and is never re-sent.
  Other publishes go on at once on a fresh channel (the lock is held for a
  few round trips, however many suspects; they may overtake a suspect);
* nothing that goes wrong while reconnecting or re-sending stops the
  background thread or drops a waiting message;
* a publish that cannot reach the broker now raises its error and keeps
  nothing, unless it passes ``keep_for`` (seconds): then the message is kept
  unsent, the background thread sends it once it reconnects, and the call
  raises ``PublishDeferred``; a kept message still unsent after ``keep_for``
  is dropped (its owner, e.g. the outbox sweeper, publishes it instead, so
  the two never both hold it);
* at process exit it waits up to ``EXIT_WAIT_SECONDS`` for the last confirms.

A message that is never confirmed stays in memory only; what makes an
accepted task durable is the caller's record of it (the Task API's outbox,
queueworks/taskapi/outbox.py), re-published by a sweeper.  Callers that
need the broker's word before answering pass ``wait_confirm=`` (seconds).
Each process's own publisher is built in queueworks/dispatch/process_publisher.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from amqp.exceptions import ChannelError

from queueworks.dispatch.compat.amqp import basic_publish_no_wait, publish_without_reading
from queueworks.dispatch.isolation import SuspectIsolation
from queueworks.dispatch.keeping import KeptUnsent, PublishDeferred  # noqa: F401

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
EXIT_WAIT_SECONDS = 5.0
# Refusals kept for callers that wait on a message after it failed.
_FAILED_KEPT = 1000


class PublishNotConfirmed(Exception):
    """``wait_confirm`` ran out before the broker confirmed the message."""


class PublishRefused(Exception):
    """The broker refused the message itself (a channel error): it is not sent again."""


@dataclass
class _Entry:
    routing_key: str
    message: object
    attempts: int = 1
    #: Kept unsent (``keep_for``): dropped at this monotonic time unless written.
    drop_at: float | None = None
    written: bool = False


class ConfirmingPublisher(SuspectIsolation, KeptUnsent):
    def __init__(self, connect: Callable[[], object], *, queues=(),
                 on_confirmed: Callable[[list], None] | None = None,
                 on_failed: Callable[[object, Exception], None] | None = None):
        #: Returns a connected kombu Connection (py-amqp transport).
        self._connect = connect
        #: kombu Queues declared on every new connection, before the reader
        #: thread starts reading it (only one thread may read a socket).
        self.queues = tuple(queues)
        #: Called (in the reader thread, lock held: must not block) with the
        #: messages the broker just confirmed, and with a refused message.
        self.on_confirmed = on_confirmed
        self.on_failed = on_failed
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)
        self._connection = None
        self._channel = None
        # Every unconfirmed message by its sequence number (publish order),
        # and the current channel's delivery tags -> sequence number.
        self._seq = 0
        self._pending: dict[int, _Entry] = {}
        self._tag = 0
        self._inflight: dict[int, int] = {}
        self._failed: dict[int, PublishRefused] = {}
        # Messages unconfirmed when the broker closed a channel, in publish
        # order, waiting for the isolating thread (never sent on the channel).
        self._suspects: dict[int, None] = {}
        self._isolator: threading.Thread | None = None
        # The channel py-amqp reopened after the broker closed it (no confirms).
        self._revived = None
        self._reader: threading.Thread | None = None
        self._closed = False

    # -- public --------------------------------------------------------------------
    def publish(self, message, *, routing_key: str, wait_confirm: float | None = None,
                keep_for: float | None = None) -> int:
        """Publish to the default exchange, routed to queue ``routing_key``.

        Returns the message's number for :meth:`wait_for`.  Raises the
        broker's connection errors if it cannot connect at all (the message
        is then not kept), or with ``keep_for`` ``PublishDeferred`` (kept).
        """
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._pending[seq] = _Entry(routing_key, message)
            had_channel = self._channel is not None
            try:
                self._send_or_open(seq)
            except Exception:  # noqa: BLE001 - a stale connection: one fresh try
                self._drop_connection()
                try:
                    if not had_channel:
                        raise
                    self._send_or_open(seq)
                except Exception as exc:
                    self._drop_connection()
                    self._keep_or_forget(seq, keep_for, exc)
        if wait_confirm is not None and not self.wait_for(seq, timeout=wait_confirm):
            raise PublishNotConfirmed(
                f"the broker did not confirm the message within {wait_confirm}s "
                "(it is kept and re-sent until it does)")
        return seq

    def wait_for(self, seq: int | None = None, *, timeout: float) -> bool:
        """Until message ``seq`` (or every message so far) is settled; False on timeout.

        Raises ``PublishRefused`` when the broker refused message ``seq``.
        """
        deadline = time.monotonic() + timeout
        with self._settled:
            last = self._seq if seq is None else seq
            while (last in self._pending if seq is not None
                   else any(pending <= last for pending in self._pending)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(remaining)
            if seq is not None and seq in self._failed:
                raise self._failed[seq]
        return True

    @property
    def unconfirmed(self) -> int:
        return len(self._pending)

    def close(self, timeout: float = EXIT_WAIT_SECONDS) -> None:
        if self._connection is not None and not self.wait_for(timeout=timeout):
            logger.critical("Exiting with %d task messages the broker has not confirmed: %s",
                            len(self._pending), _task_ids(self._pending.values()))
        self._closed = True
        with self._lock:
            self._drop_connection()

    # -- sending (lock held) ---------------------------------------------------------
    def _send_or_open(self, seq: int) -> None:
        if self._channel is None:
            self._open()  # sends every pending message, this one included
        else:
            self._transmit(seq)

    def _transmit(self, seq: int) -> None:
        if not self._channel.is_open or self._channel is self._revived:
            # The broker closed it: a publish now would be delivered without
            # a confirm, then sent again.  The reader's next channel sends it.
            return
        entry = self._pending[seq]
        entry.written = True  # kept until confirmed, like any other
        self._tag += 1
        self._inflight[self._tag] = seq
        basic_publish_no_wait(self._channel, entry.message, exchange="", routing_key=entry.routing_key)

    def _open(self) -> None:
        """A confirm channel (and a connection if there is none); then every
        unconfirmed message is sent on it, in order (suspects are sent alone)."""
        self._open_channel()
        for seq in list(self._pending):
            if seq not in self._suspects:
                self._transmit(seq)

    def _open_channel(self) -> None:
        # The reader thread drains ``self._connection`` without the lock, so a
        # new connection is handed to it only once its channel is open and
        # declared: opening reads the broker's answers on this thread, and a
        # reader draining the same socket meanwhile could take an answer this
        # thread then waits for forever, the lock held, every publish blocked.
        connection = self._connection
        fresh = connection is None
        if fresh:
            connection = self._connect()
            # Only the reader thread may read the socket once it is handed over.
            publish_without_reading(connection.connection)
        opened = []

        def on_open(channel):
            # py-amqp opens a channel the broker closed again, without confirms.
            opened.append(channel)
            if len(opened) > 1:
                self._revived = channel

        try:
            channel = connection.connection.channel(callback=on_open)
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            for queue in self.queues:
                queue(channel).declare()
        except Exception:
            if fresh:
                with contextlib.suppress(Exception):  # it is gone either way
                    connection.release()
            raise
        self._connection = connection
        self._channel, self._tag, self._inflight = channel, 0, {}
        self._start_reader()

    def _start_reader(self) -> None:
        if self._reader is None or not self._reader.is_alive():
            self._reader = threading.Thread(target=self._read_confirms,
                                            name="confirm-reader", daemon=True)
            self._reader.start()

    def _drop_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._inflight = {}
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - it is gone either way
                pass

    # -- confirms (reader thread) ------------------------------------------------------
    def _settle(self, delivery_tag: int, multiple: bool) -> list[int]:
        if multiple:
            tags = [tag for tag in self._inflight if tag <= delivery_tag]
        else:
            tags = [delivery_tag] if delivery_tag in self._inflight else []
        seqs = [self._inflight.pop(tag) for tag in tags]
        self._settled.notify_all()
        return [seq for seq in seqs if seq in self._pending]

    def _on_ack(self, delivery_tag, multiple):
        with self._lock:
            confirmed = [self._pending.pop(seq).message
                         for seq in self._settle(delivery_tag, multiple)]
            if confirmed and self.on_confirmed is not None:
                self._notify(self.on_confirmed, confirmed)

    def _on_nack(self, delivery_tag, multiple):
        with self._lock:
            for seq in self._settle(delivery_tag, multiple):
                self._retry_nacked(seq)

    def _retry_nacked(self, seq: int) -> None:
        entry = self._pending[seq]
        if entry.attempts >= MAX_ATTEMPTS:
            self._fail(seq, f"refused (nack) {entry.attempts} times")
            return
        logger.warning("The broker refused a task message (nack); sending it again.")
        entry.attempts += 1
        if self._channel is not None:
            self._transmit(seq)  # else the next channel sends it

    def _fail(self, seq: int, reason) -> None:
        entry = self._pending.pop(seq)
        task_id = _task_ids([entry])[0]
        error = PublishRefused(f"the broker refused task message {task_id}: {reason}")
        logger.critical("The broker refused task message %s (%s); it is not sent again.",
                        task_id, reason)
        self._failed[seq] = error
        while len(self._failed) > _FAILED_KEPT:
            self._failed.pop(next(iter(self._failed)))
        if self.on_failed is not None:
            self._notify(self.on_failed, entry.message, error)
        self._settled.notify_all()

    @staticmethod
    def _notify(callback, *args) -> None:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - a caller's hook must not stop the reader
            logger.exception("A publisher callback failed")

    def _read_confirms(self) -> None:
        while not self._closed:
            try:
                self._read_once()
            except Exception:  # noqa: BLE001 - the reader must outlive any error
                if self._closed:
                    return
                logger.exception("Confirm reader: unexpected error; reconnecting with %d "
                                 "unconfirmed task messages kept.", len(self._pending))
                with self._lock:
                    self._drop_connection()
                time.sleep(0.5)

    def _read_once(self) -> None:
        connection = self._connection
        if connection is None:
            self._drop_expired()
            if self._pending:
                self._reconnect_and_resend()
            else:
                time.sleep(0.05)
            return
        try:
            connection.connection.drain_events(timeout=1.0)
        except TimeoutError:
            with self._lock:
                if self._connection is connection:
                    connection.heartbeat_check()
        except ChannelError as exc:
            self._isolate_refused(connection, exc)
        except Exception as exc:  # noqa: BLE001 - any connection error: start over
            if self._closed:
                return
            logger.warning("Lost the broker connection (%s); %d unconfirmed task messages "
                           "will be sent again.", exc, len(self._pending))
            with self._lock:
                if self._connection is connection:
                    self._drop_connection()

    def _reconnect_and_resend(self) -> None:
        with self._lock:
            if self._connection is not None:
                return  # a publish reconnected meanwhile (and re-sent everything)
            try:
                self._open()
            except Exception as exc:  # noqa: BLE001 - retried below, nothing dropped
                logger.warning("Broker unreachable (%s); retrying with %d unconfirmed task "
                               "messages kept.", exc, len(self._pending))
                self._drop_connection()
                failed = True
            else:
                failed = False
        if failed:
            time.sleep(1.0)

    def _isolate_refused(self, connection, error: ChannelError) -> None:
        """The broker closed the channel over one message: suspect every
        message unconfirmed on it, hand them to the isolating thread and go on
        publishing on a fresh channel."""
        with self._lock:
            if self._connection is not connection:
                return
            logger.warning("The broker closed the publishing channel (%s); finding the "
                           "refused message among %d unconfirmed.", error, len(self._pending))
            for seq in dict.fromkeys(self._inflight.values()):
                if seq in self._pending:
                    self._suspects[seq] = None
            self._discard_channel()
            if self._isolator is None:
                self._isolator = threading.Thread(target=self._isolate, name="publish-isolator",
                                                  daemon=True)
                self._isolator.start()
            self._open()

    def _discard_channel(self) -> None:
        # py-amqp reopens a channel the broker closed (without confirms): close it.
        channel, self._channel, self._inflight = self._channel, None, {}
        if channel is not None and channel.is_open:
            try:
                channel.close()
            except ChannelError:
                pass


def _task_ids(entries) -> list[str]:
    ids = []
    for entry in entries:
        message = entry.message
        headers = getattr(message, "properties", {}).get("application_headers") or {}
        ids.append(str(headers.get("id", "?")))
    return ids
