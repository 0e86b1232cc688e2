"""This process's ``ConfirmingPublisher`` and whether the broker allows one.

One publisher per process, created on first use and created again after a
fork (gunicorn workers fork from a master that may have published): a
connection and its reader thread never cross a fork.  Its confirms and
refusals mark the Task API's outbox records (queueworks/dispatch/records/outbox.py);
at exit it waits for the last confirms.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading

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

            from queueworks.dispatch.records.outbox import confirm_marker

            marker = confirm_marker()
            publisher = ConfirmingPublisher(connect, queues=list(app.amqp.queues.values()),
                                            on_confirmed=marker.confirmed,
                                            on_failed=marker.refused)

            def close():
                publisher.close()
                marker.flush()

            atexit.register(close)
            _process_publisher = (os.getpid(), publisher)
    return _process_publisher[1]
