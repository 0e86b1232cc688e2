"""Celery internals used by the bulk lane (apps/dispatch/lean.py, pool.py).

* ``worker_state``: ``celery.worker.state``'s revoke lists
  (``revoked``, ``revoked_stamps``) and task counters (``total_count``,
  ``all_total_count``), and ``should_stop`` for a warm stop;
* ``Request`` and ``create_request_cls`` (``celery.worker.request``): a
  finished task whose outcome is not plain success is settled by Celery's
  own Request;
* ``tracer(task)``: ``task.__trace__``, the tracer the worker built for
  the task (``celery.app.trace.build_tracer``).

Hooks the project overrides, pinned by contract tests only (nothing to
import): ``BasePool._get_info`` (apps/dispatch/pool.py adds its limits to
``celery inspect stats``); ``Consumer.connection_for_write`` being what
Celery's Events step opens the event dispatcher's connection with
(apps/dispatch/worker.py); ``celery.concurrency.base.apply_target``.

Extension points used as documented (not here): bootsteps,
``worker_consumer``, ``Consumer.create_task_handler``,
``celery.concurrency.solo.TaskPool``, signals.
"""

from __future__ import annotations

import celery as _celery
from celery.worker import state as worker_state
from celery.worker.request import Request, create_request_cls

from apps.dispatch.compat import version_supported

TESTED_VERSION = "5.7.0"
SUPPORTED = version_supported(
    "celery", _celery.__version__, TESTED_VERSION,
    "the bulk lane's lean path (Celery's strategy, Request and pool run every task)")

__all__ = ["SUPPORTED", "TESTED_VERSION", "Request", "create_request_cls", "worker_state",
           "tracer"]


def tracer(task):
    """The worker's tracer for ``task`` (built by the worker at start)."""
    return task.__trace__
