"""Throw-away RabbitMQ vhosts through the management HTTP API.

Each test session gets its own vhost, so concurrent sessions (and a running
`make run`) never see each other's queues or workers.
"""

import os
import uuid

import requests

MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
AUTH = (os.environ.get("RABBITMQ_ADMIN_USER", "guest"), os.environ.get("RABBITMQ_ADMIN_PASSWORD", "guest"))
AMQP_HOSTPORT = os.environ.get("RABBITMQ_AMQP_HOSTPORT", "127.0.0.1:5672")


def _api(method: str, path: str, **kwargs) -> requests.Response:
    response = requests.request(method, f"{MANAGEMENT_URL}/api/{path}", auth=AUTH, timeout=10, **kwargs)
    response.raise_for_status()
    return response


def create_vhost(prefix: str = "test") -> str:
    vhost = f"{prefix}-{uuid.uuid4().hex[:10]}"
    _api("PUT", f"vhosts/{vhost}")
    _api("PUT", f"permissions/{vhost}/{AUTH[0]}",
         json={"configure": ".*", "write": ".*", "read": ".*"})
    return vhost


def delete_vhost(vhost: str) -> None:
    requests.delete(f"{MANAGEMENT_URL}/api/vhosts/{vhost}", auth=AUTH, timeout=10)


def broker_url(vhost: str) -> str:
    return f"pyamqp://{AUTH[0]}:{AUTH[1]}@{AMQP_HOSTPORT}/{vhost}"


def queue_info(vhost: str, queue: str) -> dict:
    return _api("GET", f"queues/{vhost}/{queue}").json()


def vhost_connections(vhost: str) -> list[str]:
    """Names of the client connections to ``vhost`` (management API)."""
    return [c["name"] for c in _api("GET", f"vhosts/{vhost}/connections").json()]


def close_connection(name: str, reason: str = "closed by a test") -> None:
    """Close one client connection from the broker's side (CONNECTION_FORCED)."""
    from urllib.parse import quote

    _api("DELETE", f"connections/{quote(name, safe='')}", headers={"X-Reason": reason})


def point_app_at(app, vhost: str) -> None:
    """Make this process's Celery app publish to ``vhost`` from its next connection."""
    os.environ["CELERY_BROKER_URL"] = broker_url(vhost)
    app.conf.broker_url = broker_url(vhost)
    # Drop pools an earlier test may have opened on another vhost.
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None
