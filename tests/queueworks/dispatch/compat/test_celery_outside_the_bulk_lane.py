"""Contract tests: the Celery internals compat/celery.py exports for
queueworks/core/cluster.py (native delayed delivery), for the crontab fields
(``manage.py topology``, the beat sync in queueworks/ops/services.py) and for
the upsert result backend (queueworks/core/results_backend.py)."""

from __future__ import annotations

import inspect
from datetime import timedelta

import pytest
from celery.schedules import crontab

from queueworks.dispatch.compat import celery as compat


@pytest.mark.parametrize("fields", [
    {"minute": "*/15", "hour": "8-17", "day_of_month": "*", "month_of_year": "*",
     "day_of_week": "mon-fri"},
    {"minute": "30", "hour": "6", "day_of_month": "1,15", "month_of_year": "1-6",
     "day_of_week": "*"},
])
def test_crontab_fields_are_the_fields_the_crontab_was_written_with(fields):
    assert compat.crontab_fields(crontab(**fields)) == fields


def test_crontab_keeps_its_fields_under_the_private_names_read():
    schedule = crontab(minute="*/5", hour="1", day_of_week="sun", day_of_month="2",
                       month_of_year="3")
    assert (schedule._orig_minute, schedule._orig_hour, schedule._orig_day_of_month,
            schedule._orig_month_of_year, schedule._orig_day_of_week) == (
        "*/5", "1", "2", "3", "sun")


def test_the_public_expanded_sets_describe_the_same_schedule(monkeypatch):
    """The stock path (another Celery): the public sets, spelled out; a crontab
    built back from them is the same schedule."""
    monkeypatch.setattr(compat, "SUPPORTED", False)
    schedule = crontab(minute="*/15", hour="8-17", day_of_week="mon-fri")
    fields = compat.crontab_fields(schedule)
    assert fields == {"minute": "0,15,30,45", "hour": "8,9,10,11,12,13,14,15,16,17",
                      "day_of_month": "*", "month_of_year": "*", "day_of_week": "1,2,3,4,5"}
    rebuilt = crontab(**fields)
    assert all(getattr(rebuilt, name) == getattr(schedule, name)
               for name, _ in compat.CRONTAB_FIELDS)


def test_other_schedules_have_no_crontab_fields():
    assert compat.crontab_fields(timedelta(seconds=15)) is None


def test_delayed_delivery_has_the_names_the_cluster_step_uses():
    stock = compat.delayed_delivery
    assert isinstance(stock.MAX_RETRIES, int) and isinstance(stock.RETRY_INTERVAL, (int, float))
    assert isinstance(stock.RETRIED_EXCEPTIONS, tuple)
    step = stock.DelayedDelivery
    assert list(inspect.signature(step._setup_delayed_delivery).parameters) == [
        "self", "c", "broker_url"]
    assert list(inspect.signature(step._validate_queue_type).parameters) == [
        "self", "queue_type"]
    assert list(inspect.signature(step._on_retry).parameters) == [
        "self", "exc", "interval_range", "intervals_count"]


def test_celerys_step_sets_up_each_url_through_the_methods_the_one_url_step_reuses():
    """``DelayedDeliveryThroughOneUrl`` replaces ``start``: it must do what
    Celery's does, with one URL; these are the calls it mirrors."""
    source = inspect.getsource(compat.delayed_delivery.DelayedDelivery.start)
    for call in ("self._setup_delayed_delivery", "errback=self._on_retry",
                 "catch=RETRIED_EXCEPTIONS", "interval_start=RETRY_INTERVAL",
                 "max_retries=MAX_RETRIES", "self._validate_configuration(app)"):
        assert call in source, call
    assert "self._validate_queue_type(" in inspect.getsource(
        compat.delayed_delivery.DelayedDelivery._validate_configuration)


def test_the_step_the_cluster_consumer_replaces_is_celerys_default():
    from celery.worker.consumer import Consumer

    from queueworks.core.cluster import CELERY_STEP

    assert CELERY_STEP in Consumer.Blueprint.default_steps


def test_the_app_caches_its_connection_pool_and_producer_pool_where_replaced(monkeypatch):
    """The benchmarks and test support point an app at another vhost by
    replacing what Celery caches: ``app.pool`` is ``app._pool`` and
    ``app.amqp.producer_pool`` is built once on it (``_producer_pool``)."""
    from celery import Celery

    # Celery reads CELERY_BROKER_URL before its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", "pyamqp://one@127.0.0.1:1/first")
    app = Celery(set_as_current=False)
    pool = app.pool
    assert compat.broker_pool(app) is pool and app.pool is pool
    producers = app.amqp.producer_pool
    assert app.amqp._producer_pool is producers and app.amqp.producer_pool is producers

    compat.replace_broker_pool(app, None)
    assert compat.broker_pool(app) is None
    assert app.amqp._producer_pool is None
    # kombu keeps pools per URL: a new URL gives new pools.
    monkeypatch.setenv("CELERY_BROKER_URL", "pyamqp://two@127.0.0.1:1/second")
    compat.replace_broker_pool(app, None)
    assert app.pool is not pool
    assert app.amqp.producer_pool is not producers


class _Connection:
    def __init__(self, log):
        self.log = log

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def as_uri(self, include_password=False):
        return "amqp://u:p@node-2:5672//"


def test_the_one_url_step_prepares_then_sets_up_once_through_the_connected_url(monkeypatch):
    from types import SimpleNamespace

    log = []
    stock = compat.delayed_delivery.DelayedDelivery
    monkeypatch.setattr(stock, "_setup_delayed_delivery",
                        lambda self, c, url: log.append(("stock setup", url)))

    class Step(compat.DelayedDeliveryThroughOneUrl):
        def prepare(self, c, connection):
            log.append(("prepare", connection.url))

    def connection_for_write(url):
        connection = _Connection(log)
        connection.url = url
        return connection

    app = SimpleNamespace(conf=SimpleNamespace(
        broker_native_delayed_delivery_queue_type="quorum"),
        connection_for_write=connection_for_write)
    consumer = SimpleNamespace(app=app, connection=_Connection(log))
    Step.__new__(Step).start(consumer)
    assert log == [("prepare", "amqp://u:p@node-2:5672//"),
                   ("stock setup", "amqp://u:p@node-2:5672//")]


def _backend_classes():
    from celery.backends.base import BaseBackend

    stored = []

    class Parent(BaseBackend):
        def _store_result(self, task_id, result, state, traceback=None, request=None,
                          **kwargs):
            stored.append(("parent", task_id))

    class Hooked(Parent):
        def store_state(self, task_id, result, state, traceback=None, request=None,
                        **kwargs):
            stored.append(("hook", task_id))
            return self.stock_store_state(task_id, result, state, traceback=traceback,
                                          request=request, **kwargs)

    return Hooked, stored


def test_store_result_hook_makes_store_state_the_hook_with_the_parents_as_stock():
    from celery import Celery

    hooked, stored = _backend_classes()
    backend = compat.store_result_hook(hooked)(app=Celery(set_as_current=False))
    backend.store_result("an-id", 1, "SUCCESS")
    assert stored == [("hook", "an-id"), ("parent", "an-id")]


def test_store_result_hook_leaves_the_class_alone_on_another_celery(monkeypatch):
    from celery import Celery

    monkeypatch.setattr(compat, "SUPPORTED", False)
    hooked, stored = _backend_classes()
    assert compat.store_result_hook(hooked) is hooked
    hooked(app=Celery(set_as_current=False)).store_result("an-id", 1, "SUCCESS")
    assert stored == [("parent", "an-id")]
