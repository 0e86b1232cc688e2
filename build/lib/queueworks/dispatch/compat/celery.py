"""Celery internals used by the bulk lane (queueworks/dispatch/lean.py, pool.py).

The lean path enters through Celery's public per-task extension point,
``Task.Strategy`` (``lean_strategy``, named by ``ReliableTask``): it falls
back to the handler of the default strategy the base ``Task.Strategy`` names
(``celery.worker.strategy:default``).  What it does inside is private:

* ``worker_state``: ``celery.worker.state``'s revoke lists
  (``revoked``, ``revoked_stamps``) and task counters (``total_count``,
  ``all_total_count``), and ``should_stop`` for a warm stop;
* ``Request`` and ``create_request_cls`` (``celery.worker.request``): a
  finished task whose outcome is not plain success is settled by Celery's
  own Request;
* ``tracer(task)``: ``task.__trace__``, the tracer the worker built for
  the task (``celery.app.trace.build_tracer``).

Outside the bulk lane:

* ``crontab_fields(schedule)``: the five fields a ``crontab`` was written
  with (``crontab._orig_minute`` ... ``_orig_month_of_year``), for
  ``manage.py topology`` and the beat sync (queueworks/ops/services.py).  Stock
  path: the crontab's public expanded sets, written as comma lists (the
  same schedule, spelled out);
* ``pool_info(extra)``: a pool class decorator; ``celery inspect stats``
  (``BasePool.info``, built by the private hook ``BasePool._get_info``) also
  shows ``extra(pool)`` (queueworks/dispatch/pool.py: its limits).  Stock path:
  the class is left alone and reports Celery's own info;
* ``DelayedDeliveryThroughOneUrl``: Celery's native delayed-delivery step
  (``celery.worker.consumer.delayed_delivery``, exported as
  ``delayed_delivery``) set up once, through the URL the consumer is
  connected to, after a public ``prepare(c, connection)`` hook; it overrides
  or calls the step's ``_setup_delayed_delivery``, ``_validate_queue_type``
  and ``_on_retry`` and reuses ``MAX_RETRIES``, ``RETRIED_EXCEPTIONS``,
  ``RETRY_INTERVAL`` (queueworks/core/cluster.py subclasses it).  Stock path:
  the consumer keeps Celery's own step;
* ``store_result_hook``: a result backend class decorator; its
  ``store_state`` becomes the ``_store_result`` hook every backend implements
  and Celery's ``store_result`` calls, with the parent's as
  ``stock_store_state`` (queueworks/core/results_backend.py).  Stock path: the
  class is left alone and stores as its parent does;
* ``broker_pool(app)`` / ``replace_broker_pool(app, pool)``: the connection
  pool Celery caches on the app (``app._pool``) and the producer pool built
  on it (``app.amqp._producer_pool``), for the benchmarks and the test
  support, which point one process's app at a throw-away vhost and back.
  Celery has no public way to drop them short of ``app.close()``, which also
  deregisters the app.  No stock path: used outside production only, pinned
  by a contract test.

Hooks the project overrides, pinned by contract tests only (nothing to
import): ``Consumer.connection_for_write`` being what
Celery's Events step opens the event dispatcher's connection with
(queueworks/dispatch/worker.py); ``celery.concurrency.base.apply_target``.

How Celery builds and calls strategies is pinned by a contract test too:
the task consumer's start runs ``update_strategies()`` (so strategies are
rebuilt at every reconnection, before ``LeanSteps`` starts: the lean
strategy looks its runner up per message), and the consumer calls a
handler as ``(message, payload, ack, reject, callbacks)``.

Extension points used as documented (not here): ``Task.Strategy``,
bootsteps, ``worker_consumer``, ``Consumer.create_task_handler`` (the
poison-body check, queueworks/reliability/consumer.py),
``celery.concurrency.solo.TaskPool``, signals.
"""

from __future__ import annotations

import logging

import celery as _celery
from celery.schedules import crontab
from celery.worker import state as worker_state
from celery.worker.consumer import delayed_delivery
from celery.worker.request import Request, create_request_cls
from kombu.utils.functional import retry_over_time
from kombu.utils.url import maybe_sanitize_url

from queueworks.dispatch.compat import version_supported

TESTED_VERSION = "5.7.0"
SUPPORTED = version_supported(
    "celery", _celery.__version__, TESTED_VERSION,
    "the bulk lane's lean path (Celery's default strategy, Request and pool run every "
    "task); "
    "native delayed delivery on a quorum cluster (Celery's own step); crontab fields "
    "(read from the crontab's public expanded sets); the bulk pool's limits in "
    "inspect stats (Celery's own pool info)")

__all__ = ["SUPPORTED", "TESTED_VERSION", "Request", "create_request_cls", "worker_state",
           "tracer", "crontab_fields", "delayed_delivery", "CRONTAB_FIELDS", "pool_info",
           "broker_pool", "replace_broker_pool", "DelayedDeliveryThroughOneUrl",
           "store_result_hook"]

logger = logging.getLogger(__name__)

# crontab's fields in the order of a crontab line (m h dom mon dow), with the
# range a field covers when it is "*".
CRONTAB_FIELDS = (("minute", range(60)), ("hour", range(24)), ("day_of_month", range(1, 32)),
                  ("month_of_year", range(1, 13)), ("day_of_week", range(7)))


def tracer(task):
    """The worker's tracer for ``task`` (built by the worker at start)."""
    return task.__trace__


def crontab_fields(schedule) -> dict[str, str] | None:
    """The five fields of a ``crontab`` as text (None for any other schedule).

    On the tested version: the fields as written (``*/15``, ``mon-fri``).
    Otherwise: each public expanded set as a comma list, ``*`` for a full
    range: the same schedule for beat and django-celery-beat, spelled out.
    """
    if not isinstance(schedule, crontab):
        return None
    if SUPPORTED:
        return {name: str(getattr(schedule, f"_orig_{name}")) for name, _ in CRONTAB_FIELDS}
    fields = {}
    for name, full in CRONTAB_FIELDS:
        values = sorted(getattr(schedule, name))
        fields[name] = "*" if values == list(full) else ",".join(map(str, values))
    return fields


def pool_info(extra):
    """Class decorator: the pool's ``celery inspect stats`` info also holds
    ``extra(pool)`` (a dict).

    ``BasePool.info`` builds its answer with the private hook ``_get_info``;
    on the tested version the class gets a ``_get_info`` that adds ``extra``
    to Celery's.  On any other version the class is returned untouched and
    reports Celery's own info.
    """
    def decorate(pool_cls):
        if not SUPPORTED:
            return pool_cls
        stock = pool_cls._get_info

        def _get_info(self):
            info = stock(self)
            info.update(extra(self))
            return info

        pool_cls._get_info = _get_info
        return pool_cls

    return decorate


def broker_pool(app):
    """The connection pool the app has cached (None before its first connection)."""
    return app._pool


def replace_broker_pool(app, pool) -> None:
    """Put ``pool`` in the app's cache (None: the next connection is built from
    the app's current ``broker_url``) and drop the producer pool built on the
    previous one."""
    app._pool = pool
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None


class DelayedDeliveryThroughOneUrl(delayed_delivery.DelayedDelivery):
    """Celery's native delayed-delivery step, set up once through the URL of
    the connection the consumer holds (Celery's sets it up once per URL of the
    failover list, retrying each).  ``prepare(c, connection)`` runs first, on
    a connection to that URL.  Use it only when ``SUPPORTED``."""

    def start(self, c) -> None:
        app = c.app
        self._validate_queue_type(app.conf.broker_native_delayed_delivery_queue_type)
        url = c.connection.as_uri(include_password=True)
        try:
            retry_over_time(
                self._setup_delayed_delivery, args=(c, url),
                catch=delayed_delivery.RETRIED_EXCEPTIONS, errback=self._on_retry,
                interval_start=delayed_delivery.RETRY_INTERVAL,
                max_retries=delayed_delivery.MAX_RETRIES,
            )
        except Exception as exc:  # noqa: BLE001 - logged; consuming must go on
            logger.critical("Native delayed delivery not set up through %s: %s",
                            maybe_sanitize_url(url), exc)

    def _setup_delayed_delivery(self, c, broker_url: str) -> None:
        with c.app.connection_for_write(url=broker_url) as connection:
            self.prepare(c, connection)
        super()._setup_delayed_delivery(c, broker_url)

    def prepare(self, c, connection) -> None:
        """Runs before each setup attempt, on a connection to the same URL."""


def store_result_hook(backend_cls):
    """Class decorator for a result backend: ``backend_cls.store_state`` stores
    every state (``(task_id, result, status, traceback=None, request=None,
    **kwargs)``, Celery's ``_store_result`` hook), and ``stock_store_state``
    is the parent's hook, for what it does not handle.

    On another Celery version the class is returned untouched: it stores as
    its parent does (``store_state`` is never called).
    """
    if not SUPPORTED:
        return backend_cls

    def stock_store_state(self, *args, **kwargs):
        return super(backend_cls, self)._store_result(*args, **kwargs)

    backend_cls.stock_store_state = stock_store_state
    backend_cls._store_result = backend_cls.store_state
    return backend_cls
