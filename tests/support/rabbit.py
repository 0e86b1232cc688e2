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
