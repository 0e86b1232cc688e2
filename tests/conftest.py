"""Session-wide fixtures.

`live_system` starts ONE real system per test session (a private RabbitMQ
vhost, supervisord from the committed deploy/conf.d files with every program,
real worker processes) and shares it between all tests that use it.  Tests that
talk to it must use `transaction=True` so workers see their rows.
"""

import os
import secrets

import pytest

from tests.support import postgres, rabbit, rabbitmq4
from tests.support.live import LiveSystem, build_env, free_port

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")


def pytest_collection_modifyitems(config, items):
    """``only_on_broker(name)``: a test of one broker version is deselected
    on the other (deselected, not skipped: CI's skip summary stays empty)."""
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("only_on_broker")
        (dropped if marker and marker.args[0] != rabbitmq4.TEST_BROKER else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_report_header(config):
    return (f"broker: {rabbitmq4.TEST_BROKER} ({rabbit.AMQP_HOSTPORT}), "
            f"database: {postgres.TEST_DATABASE}")


@pytest.fixture(scope="session")
def broker_node(request) -> str:
    """The broker the live tests use, running and provisioned: ``rabbitmq3``
    is the machine's (`make install`); ``rabbitmq4`` (QUEUEWORKS_TEST_BROKER,
    tests/support/rabbitmq4.py) is started here."""
    if rabbitmq4.TEST_BROKER == "rabbitmq4":
        rabbitmq4.start_single(**rabbit.credentials())
    return rabbitmq4.TEST_BROKER


@pytest.fixture(autouse=True)
def fresh_throttle_counters():
    """Request counters live in files, outside the rolled-back test database."""
    from django.core.cache import caches

    caches["throttles"].clear()


@pytest.fixture(autouse=True)
def fresh_broker_connections(request):
    """Each live test's ``app.control`` and publishes start on new broker
    connections.  This process sends no AMQP heartbeats between calls, so
    RabbitMQ closes a pooled connection left idle for two heartbeat
    intervals (a loaded machine can take that long between two live tests),
    and Celery's remote control does not reconnect: the next broadcast
    would fail with a reset connection."""
    if request.node.get_closest_marker("live") is not None:
        request.getfixturevalue("broker_node")
        rabbit.drop_broker_pools()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """A file-based SQLite test database, so worker processes can share it;
    on the PostgreSQL pass a database named per test run, so two runs on
    one server do not drop each other's."""
    from django.conf import settings

    postgres.require_test_database()
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")
    else:
        database.setdefault("TEST", {})["NAME"] = f"test_queueworks_{secrets.token_hex(4)}"
        postgres.retry_flush_on_deadlock()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, and on PostgreSQL the test database's other sessions
    closed before it is dropped (DROP DATABASE refuses while any is open)."""
    yield
    from django.db import connection

    if connection.vendor == "postgresql":
        with django_db_blocker.unblock():
            postgres.end_other_sessions(connection)


def _database_url(settings_dict) -> str:
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{settings_dict['NAME']}"


@pytest.fixture(scope="session")
def broker_vhost(broker_node):
    vhost = rabbit.create_vhost()
    from projectname.celery import app

    # Point this process's producer at the private vhost before it connects
    # (Celery reads CELERY_BROKER_URL from the environment before its config).
    rabbit.point_app_at(app, vhost)
    assert app.connection_for_write().as_uri(include_password=True).endswith(vhost)
    yield vhost
    rabbit.delete_vhost(vhost)


@pytest.fixture(scope="session")
def live_system(django_db_setup, django_db_blocker, broker_vhost, tmp_path_factory):
    from django.db import connection

    run_dir = tmp_path_factory.mktemp("system")
    (run_dir / "log").mkdir()
    web_port, flower_port = free_port(), free_port()
    database_url = _database_url(connection.settings_dict)
    system = LiveSystem(
        run_dir=run_dir, vhost=broker_vhost, broker_url=rabbit.broker_url(broker_vhost),
        database_url=database_url,
        env=build_env(run_dir=run_dir, broker_url=rabbit.broker_url(broker_vhost),
                      database_url=database_url, web_port=web_port, flower_port=flower_port),
        web_port=web_port, flower_port=flower_port,
    )
    try:
        system.start()
        yield system
    finally:
        system.stop()
