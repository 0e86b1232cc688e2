"""Throw-away RabbitMQ vhosts through the management HTTP API.

Each test session gets its own vhost, so concurrent sessions (and a running
`make run`) never see each other's queues or workers.

Nothing here uses `guest`.  The vhosts are created by the test administrator
that deploy/bin/ensure-rabbitmq-user.sh makes (RABBITMQ_ADMIN_USER/PASSWORD,
from the environment or .env); the system under test connects as the
project's least-privilege user (the user of CELERY_BROKER_URL in .env), with
the same permissions on the test vhost as on the project's own
(queueworks/core/broker_access.py), and the monitoring user reads the
management API.
"""

import contextlib
import os
import uuid
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import requests

from queueworks.dispatch.compat.celery import broker_pool, replace_broker_pool
from queueworks.core.broker_access import APP_USER, MONITOR_PERMISSIONS, project_permissions
from queueworks.core.broker_setup import read_env_file
from tests.support.rabbitmq4 import apply_test_broker

# QUEUEWORKS_TEST_BROKER=rabbitmq4 points everything below at the 4.x node.
apply_test_broker()

_DOTENV = read_env_file(Path(__file__).resolve().parents[2] / ".env")


def _setting(name: str, default: str = "") -> str:
    return os.environ.get(name) or _DOTENV.get(name) or default


def _required(name: str) -> str:
    value = _setting(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run `make install` "
                           "(deploy/bin/ensure-rabbitmq-user.sh writes it to .env).")
    return value


def _project_user() -> tuple[str, str]:
    """The project's user and password, from the development CELERY_BROKER_URL."""
    url = urlsplit(_DOTENV.get("CELERY_BROKER_URL") or _required("CELERY_BROKER_URL"))
    if url.username != APP_USER or not url.password:
        raise RuntimeError(f"CELERY_BROKER_URL in .env does not name the project's user "
                           f"'{APP_USER}': run `make install` (deploy/bin/ensure-rabbitmq-user.sh).")
    return unquote(url.username), unquote(url.password)


MANAGEMENT_URL = _setting("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
AMQP_HOSTPORT = _setting("RABBITMQ_AMQP_HOSTPORT", "127.0.0.1:5672")
# The test administrator: creates and deletes vhosts, raw test connections.
AUTH = (_required("RABBITMQ_ADMIN_USER"), _required("RABBITMQ_ADMIN_PASSWORD"))
# The project's least-privilege user: every program of the system under test.
APP_AUTH = _project_user()
MONITOR_AUTH = (_required("RABBITMQ_MANAGEMENT_USER"), _required("RABBITMQ_MANAGEMENT_PASSWORD"))


def credentials() -> dict:
    """The users every node of the suite gets (tests/support/rabbitmq4.py)."""
    return {"admin": AUTH, "app_password": APP_AUTH[1], "monitor_password": MONITOR_AUTH[1]}


def _api(method: str, path: str, **kwargs) -> requests.Response:
    response = requests.request(method, f"{MANAGEMENT_URL}/api/{path}", auth=AUTH, timeout=10, **kwargs)
    if response.status_code == 401:
        raise RuntimeError(f"RabbitMQ refused {AUTH[0]}'s password (RABBITMQ_ADMIN_PASSWORD): run "
                           "`make install` (deploy/bin/ensure-rabbitmq-user.sh) to bring .env in line.")
    response.raise_for_status()
    return response


def create_vhost(prefix: str = "test") -> str:
    vhost = f"{prefix}-{uuid.uuid4().hex[:10]}"
    _api("PUT", f"vhosts/{vhost}")
    _api("PUT", f"permissions/{vhost}/{quote(AUTH[0], safe='')}",
         json={"configure": ".*", "write": ".*", "read": ".*"})
    _api("PUT", f"permissions/{vhost}/{quote(APP_AUTH[0], safe='')}", json=test_vhost_permissions())
    _api("PUT", f"permissions/{vhost}/{quote(MONITOR_AUTH[0], safe='')}", json=MONITOR_PERMISSIONS.as_json())
    return vhost


# Queues and exchanges that tests declare for themselves (a beat lock of their
# own, a queue pre-declared with other arguments, ...) are named "test.*".
TEST_NAME_PATTERN = r"test\..+"


def test_vhost_permissions() -> dict[str, str]:
    """The project's permissions, plus the names tests declare for themselves."""
    return {kind: regex.replace("^(", f"^({TEST_NAME_PATTERN}|", 1) if regex else regex
            for kind, regex in project_permissions().as_json().items()}


def delete_vhost(vhost: str) -> None:
    requests.delete(f"{MANAGEMENT_URL}/api/vhosts/{vhost}", auth=AUTH, timeout=10)


def delete_user(user: str) -> None:
    requests.delete(f"{MANAGEMENT_URL}/api/users/{quote(user, safe='')}", auth=AUTH, timeout=10)


def broker_url(vhost: str) -> str:
    """The system under test's URL: the project's least-privilege user."""
    return f"pyamqp://{quote(APP_AUTH[0], safe='')}:{quote(APP_AUTH[1], safe='')}@{AMQP_HOSTPORT}/{vhost}"


def admin_broker_url(vhost: str) -> str:
    """Full rights on the vhost: harnesses that declare their own queues (benchmarks)."""
    return f"pyamqp://{quote(AUTH[0], safe='')}:{quote(AUTH[1], safe='')}@{AMQP_HOSTPORT}/{vhost}"


def admin_connection(vhost: str):
    """A py-amqp connection to ``vhost`` with full rights (no heartbeats):
    tests that declare, fill or read queues themselves."""
    import amqp

    connection = amqp.Connection(host=AMQP_HOSTPORT, userid=AUTH[0], password=AUTH[1],
                                 virtual_host=vhost, heartbeat=0)
    connection.connect()
    return connection


def queue_info(vhost: str, queue: str) -> dict:
    return _api("GET", f"queues/{vhost}/{queue}").json()


def vhost_connections(vhost: str) -> list[str]:
    """Names of the client connections to ``vhost`` (management API)."""
    return [c["name"] for c in _api("GET", f"vhosts/{vhost}/connections").json()]


def close_connection(name: str, reason: str = "closed by a test") -> None:
    """Close one client connection from the broker's side (CONNECTION_FORCED).

    One that closed on its own since it was listed is done with: RabbitMQ
    answers its DELETE with 404, or with 500 when it went mid-request."""
    from urllib.parse import quote

    path = f"connections/{quote(name, safe='')}"
    try:
        _api("DELETE", path, headers={"X-Reason": reason})
    except requests.HTTPError:
        gone = requests.get(f"{MANAGEMENT_URL}/api/{path}", auth=AUTH, timeout=10)
        if gone.status_code != 404:
            raise


@contextlib.contextmanager
def app_publishing_to(app, url: str):
    """This process's Celery app publishes to ``url`` inside the block; its
    previous URL and pool are put back after.  The previous pool is put
    aside, not closed: kombu keeps pools in a registry by URL, and the
    session uses it again after."""
    previous = (os.environ.get("CELERY_BROKER_URL"), app.conf.broker_url, broker_pool(app))
    os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = url
    replace_broker_pool(app, None)
    try:
        yield
    finally:
        if broker_pool(app) is not None:
            broker_pool(app).force_close_all()
        if previous[0] is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = previous[0]
        app.conf.broker_url = previous[1]
        replace_broker_pool(app, previous[2])


def drop_broker_pools() -> None:
    """This process's Celery app and kombu open new broker connections from
    their next use (the current pool's connections are closed; kombu's pool
    registry, which would hand the closed pool back, is emptied)."""
    from kombu import pools

    from projectname.celery import app

    if broker_pool(app) is not None:
        broker_pool(app).force_close_all()
    pools.reset()
    replace_broker_pool(app, None)


def point_app_at(app, vhost: str) -> None:
    """Make this process's Celery app publish to ``vhost`` from its next connection."""
    os.environ["CELERY_BROKER_URL"] = broker_url(vhost)
    app.conf.broker_url = broker_url(vhost)
    # Drop pools an earlier test may have opened on another vhost.
    if broker_pool(app) is not None:
        broker_pool(app).force_close_all()
    replace_broker_pool(app, None)
