"""This process's ``ConfirmingPublisher`` and whether the broker allows one.

One publisher per process, created on first use and created again after a
fork (gunicorn workers fork from a master that may have published): a
connection and its reader thread never cross a fork.  Its confirms and
refusals go to the listener registered with ``listen_to_confirms`` (the Task
API's outbox marks its records: queueworks/taskapi/outbox.py); at exit it waits
for the last confirms.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
from collections.abc import Callable
from typing import Protocol

from queueworks.dispatch.compat import amqp as compat_amqp
from queueworks.dispatch.publisher import ConfirmingPublisher
from queueworks.conf import settings as queueworks_settings


def publisher_supported() -> bool:
    """RabbitMQ through py-amqp (publisher confirms; Redis has neither), on the
    py-amqp version the publisher was tested with (it rewrites a live
    connection: queueworks/dispatch/compat/amqp.py)."""
    from queueworks.conf import celery_app
    app = celery_app()

    return compat_amqp.SUPPORTED and _speaks_amqp(app.conf.broker_write_url
                                                  or app.conf.broker_url)


@functools.lru_cache(maxsize=8)
def _speaks_amqp(url: str) -> bool:
    from kombu import Connection

    return Connection(url).transport_cls in ("pyamqp", "amqp", "amqps")


_process_publisher: tuple[int, ConfirmingPublisher] | None = None
_create_lock = threading.Lock()


class ConfirmListener(Protocol):
    """Told of the process publisher's confirms and refusals (in its reader
    thread: must not block) and flushed at exit."""

    def confirmed(self, messages: list) -> None: ...

    def refused(self, message, error: Exception) -> None: ...

    def flush(self) -> None: ...


_listener_factory: Callable[[], ConfirmListener] | None = None


def listen_to_confirms(factory: Callable[[], ConfirmListener]) -> None:
    """Each process publisher created from now on reports to ``factory()``'s
    listener.  The Task API registers its outbox's marker when it is ready
    (queueworks/taskapi/apps.py): the records are its own, this layer only
    publishes."""
    global _listener_factory
    _listener_factory = factory


def process_publisher() -> ConfirmingPublisher:
    """This process's publisher (a new one after a fork, e.g. in gunicorn workers)."""
    global _process_publisher
    current = _process_publisher
    if current is not None and current[0] == os.getpid():
        return current[1]
    with _create_lock:
        if _process_publisher is None or _process_publisher[0] != os.getpid():
            from django.conf import settings

            from queueworks.conf import celery_app
            app = celery_app()

            timeout = float(queueworks_settings.TASKAPI_BROKER_TIMEOUT)
            retries = int(queueworks_settings.TASKAPI_BROKER_RETRIES)

            def connect():
                connection = app.connection_for_write(connect_timeout=timeout)
                connection.ensure_connection(max_retries=retries, interval_start=0,
                                             interval_step=0.2, interval_max=0.5,
                                             timeout=timeout)
                return connection

            listener = _listener_factory() if _listener_factory is not None else None
            publisher = ConfirmingPublisher(
                connect, queues=list(app.amqp.queues.values()),
                on_confirmed=listener.confirmed if listener is not None else None,
                on_failed=listener.refused if listener is not None else None)

            def close():
                publisher.close()
                if listener is not None:
                    listener.flush()

            atexit.register(close)
            _process_publisher = (os.getpid(), publisher)
    return _process_publisher[1]
