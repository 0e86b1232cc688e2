"""Publish one task from a request without waiting for the broker's confirm.

A persistent message on a durable queue is confirmed by RabbitMQ only after
it is on disk: measured here 0.5 ms median but 3.5 ms p99 with a confirm wait
after every message (kombu's ``confirm_publish``), which is most of what an
enqueue adds to a request.  ``ConfirmingPublisher`` keeps the confirms and
drops the wait:

* one broker connection per process (a web worker), opened once and reused,
  with one channel in confirm mode;
* ``publish()`` writes the message and returns; the message is kept in memory
  until its ``basic.ack`` arrives, which a background thread reads;
* a ``basic.nack`` re-publishes the message (up to ``MAX_ATTEMPTS``, then it
  is logged as CRITICAL with its task id: never dropped silently);
* a lost connection re-publishes every unconfirmed message on the next one
  (a message confirmed just before the loss may then arrive twice: tasks are
  idempotent in this project, see apps/reliability);
* at process exit it waits up to ``EXIT_WAIT_SECONDS`` for the last confirms.

What that gives up, measured against a confirm wait per message: a message
can only be lost if the web process dies *and* the broker loses the message
within the few milliseconds before its confirm (the bytes already written
reach the broker even if the process dies).  Callers that need the broker's
word before answering pass ``wait_confirm=`` (seconds) to wait for it.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
EXIT_WAIT_SECONDS = 5.0


class PublishNotConfirmed(Exception):
    """``wait_confirm`` ran out before the broker confirmed the message."""


class ConfirmingPublisher:
    def __init__(self, connect: Callable[[], object], *, queues=()):
        #: Returns a connected kombu Connection (py-amqp transport).
        self._connect = connect
        #: kombu Queues declared on every new connection, before the reader
        #: thread starts reading it (only one thread may read a socket).
        self.queues = tuple(queues)
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)
        self._connection = None
        self._channel = None
        self._tag = 0
        # delivery tag -> (routing_key, message, attempts); tags only grow.
        self._pending: dict[int, tuple[str, object, int]] = {}
        self._reader: threading.Thread | None = None
        self._closed = False

    # -- public --------------------------------------------------------------------
    def publish(self, message, *, routing_key: str, wait_confirm: float | None = None) -> int:
        """Publish to the default exchange, routed to queue ``routing_key``.

        Raises the broker's connection errors if it cannot connect at all.
        """
        with self._lock:
            had_connection = self._connection is not None
            try:
                tag = self._connect_and_send(routing_key, message)
            except Exception:  # noqa: BLE001 - a stale connection: one fresh try
                if not had_connection:
                    raise  # the broker is unreachable: the caller hears it now
                self._drop_connection()
                tag = self._connect_and_send(routing_key, message)
        if wait_confirm is not None and not self.wait_for(tag, timeout=wait_confirm):
            raise PublishNotConfirmed(
                f"the broker did not confirm the message within {wait_confirm}s "
                "(it is kept and re-sent until it does)")
        return tag

    def wait_for(self, tag: int | None = None, *, timeout: float) -> bool:
        """Until ``tag`` (or every message so far) is confirmed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._settled:
            last = self._tag if tag is None else tag
            while any(pending <= last for pending in self._pending):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(remaining)
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

    # -- internals -----------------------------------------------------------------
    def _connect_and_send(self, routing_key: str, message) -> int:
        self._ensure_connected()
        try:
            return self._send(routing_key, message, attempts=1)
        except Exception:
            # Not sent: the caller hears about it, so it must not be re-sent.
            self._pending.pop(self._tag, None)
            raise

    def _send(self, routing_key: str, message, attempts: int) -> int:
        self._tag += 1
        self._pending[self._tag] = (routing_key, message, attempts)
        self._channel._basic_publish(message, exchange="", routing_key=routing_key)
        return self._tag

    def _ensure_connected(self) -> None:
        if self._connection is not None:
            return
        connection = self._connect()
        raw = connection.connection
        # Only the reader thread may read the socket.  py-amqp's publish reads
        # pending frames first when the broker can send connection.blocked;
        # the reader thread handles those notifications instead.
        capabilities = dict(raw.client_properties.get("capabilities", {}),
                            **{"connection.blocked": False})
        raw.client_properties = dict(raw.client_properties, capabilities=capabilities)
        channel = raw.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        for queue in self.queues:
            queue(channel).declare()
        self._connection, self._channel, self._tag = connection, channel, 0
        if self._reader is None or not self._reader.is_alive():
            self._reader = threading.Thread(target=self._read_confirms,
                                            name="confirm-reader", daemon=True)
            self._reader.start()

    def _drop_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - it is gone either way
                pass

    def _settle(self, delivery_tag: int, multiple: bool) -> list[tuple[str, object, int]]:
        if multiple:
            tags = [tag for tag in self._pending if tag <= delivery_tag]
        else:
            tags = [delivery_tag] if delivery_tag in self._pending else []
        settled = [self._pending.pop(tag) for tag in tags]
        self._settled.notify_all()
        return settled

    def _on_ack(self, delivery_tag, multiple):
        with self._lock:
            self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag, multiple):
        with self._lock:
            for routing_key, message, attempts in self._settle(delivery_tag, multiple):
                if attempts >= MAX_ATTEMPTS:
                    logger.critical("The broker refused task message %s %d times; giving up.",
                                    _task_ids([(routing_key, message, attempts)]), attempts)
                    continue
                logger.warning("The broker refused a task message (nack); sending it again.")
                self._send(routing_key, message, attempts + 1)

    def _read_confirms(self) -> None:
        while not self._closed:
            connection = self._connection
            if connection is None:
                if self._pending:
                    self._reconnect_and_resend()
                else:
                    time.sleep(0.05)
                continue
            try:
                connection.connection.drain_events(timeout=1.0)
            except TimeoutError:
                with self._lock:
                    if self._connection is connection:
                        connection.heartbeat_check()
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
            try:
                self._ensure_connected()
            except Exception as exc:  # noqa: BLE001 - retried below
                logger.warning("Broker unreachable (%s); retrying with %d unconfirmed task "
                               "messages kept.", exc, len(self._pending))
                failed = True
            else:
                failed = False
                waiting, self._pending = list(self._pending.values()), {}
                for routing_key, message, attempts in waiting:
                    self._send(routing_key, message, attempts)
        if failed:
            time.sleep(1.0)


def _task_ids(entries) -> list[str]:
    ids = []
    for _, message, _ in entries:
        headers = getattr(message, "properties", {}).get("application_headers") or {}
        ids.append(str(headers.get("id", "?")))
    return ids


def publisher_supported() -> bool:
    """RabbitMQ through py-amqp (publisher confirms); Redis has neither."""
    from projectname.celery import app

    return _speaks_amqp(app.conf.broker_write_url or app.conf.broker_url)


@functools.lru_cache(maxsize=8)
def _speaks_amqp(url: str) -> bool:
    from kombu import Connection

    return Connection(url).transport_cls in ("pyamqp", "amqp", "amqps")


_process_publisher: tuple[int, ConfirmingPublisher] | None = None
_create_lock = threading.Lock()


def process_publisher() -> ConfirmingPublisher:
    """This process's publisher (a new one after a fork, e.g. in gunicorn workers)."""
    global _process_publisher
    current = _process_publisher
    if current is not None and current[0] == os.getpid():
        return current[1]
    with _create_lock:
        if _process_publisher is None or _process_publisher[0] != os.getpid():
            from django.conf import settings

            from projectname.celery import app

            timeout = float(getattr(settings, "TASKAPI_BROKER_TIMEOUT", 2.0))
            retries = int(getattr(settings, "TASKAPI_BROKER_RETRIES", 1))

            def connect():
                connection = app.connection_for_write(connect_timeout=timeout)
                connection.ensure_connection(max_retries=retries, interval_start=0,
                                             interval_step=0.2, interval_max=0.5,
                                             timeout=timeout)
                return connection

            publisher = ConfirmingPublisher(connect, queues=list(app.amqp.queues.values()))
            atexit.register(publisher.close)
            _process_publisher = (os.getpid(), publisher)
    return _process_publisher[1]
