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
* ``delayed_delivery``: ``celery.worker.consumer.delayed_delivery``
  (``DelayedDelivery``, ``MAX_RETRIES``, ``RETRIED_EXCEPTIONS``,
  ``RETRY_INTERVAL``) and the step methods queueworks/core/cluster.py overrides
  or calls (``_setup_delayed_delivery``, ``_validate_queue_type``,
  ``_on_retry``).  Stock path: Celery's own delayed-delivery step;
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
(queueworks/dispatch/worker.py); ``celery.concurrency.base.apply_target``;
``BaseBackend._store_result``, the hook every result backend implements and
``store_result`` calls (queueworks/core/results_backend.py).

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

import celery as _celery
from celery.schedules import crontab
from celery.worker import state as worker_state
from celery.worker.consumer import delayed_delivery
from celery.worker.request import Request, create_request_cls

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
           "broker_pool", "replace_broker_pool"]

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
