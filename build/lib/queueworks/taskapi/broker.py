"""Bounded broker access for request/response code paths.

A web request must never hang on an unreachable broker: every connection made
here has a connect timeout and at most ``TASKAPI_BROKER_RETRIES`` quick
retries, and any failure becomes ``BrokerUnavailable`` (HTTP 503).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from amqp.exceptions import AMQPError
from django.conf import settings
from kombu import Connection
from kombu.exceptions import OperationalError

from queueworks.taskapi.errors import BrokerUnavailable
from queueworks.conf import celery_app
from queueworks.conf import settings as queueworks_settings

app = celery_app()

# AMQPError: the broker answered and refused (a vhost it does not have, a
# user it does not know, a permission), which kombu does not wrap.
BROKER_ERRORS = (OperationalError, AMQPError, OSError, socket.timeout, ConnectionError)


def retry_policy() -> dict[str, float]:
    return {
        "max_retries": queueworks_settings.TASKAPI_BROKER_RETRIES,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    }


def _safe_url(conn: Connection) -> str:
    try:
        return conn.as_uri()  # password masked
    except Exception:  # noqa: BLE001 - only used in a message
        return "the broker"


@contextmanager
def broker_connection() -> Iterator[Connection]:
    """A connected broker connection, or ``BrokerUnavailable`` within a bounded time."""
    timeout = queueworks_settings.TASKAPI_BROKER_TIMEOUT
    conn = app.connection_for_write(connect_timeout=timeout)
    try:
        try:
            conn.ensure_connection(
                max_retries=queueworks_settings.TASKAPI_BROKER_RETRIES,
                interval_start=0, interval_step=0.2, interval_max=0.5,
                timeout=timeout,
            )
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(
                f"The message broker is unreachable ({_safe_url(conn)}): {exc}. Nothing was sent."
            ) from exc
        yield conn
    finally:
        conn.release()
