"""django-celery-results' database backend, each state written in one statement.

The stock backend stores a state through ``TaskResult.objects.store_result``:
a ``get_or_create`` (a SELECT, then an INSERT in a transaction when the row is
new) and, for an existing row, an UPDATE of every column.  A result-keeping
task pays that twice (STARTED, then SUCCESS or FAILURE).

``UpsertDatabaseBackend`` writes the same columns with one
``INSERT ... ON CONFLICT (task_id) DO UPDATE`` per state, on PostgreSQL and
SQLite (any other database goes the stock backend's way), in autocommit like
the stock UPDATE, so the row ends as the stock backend leaves it:

* ``date_created`` is set when the row is inserted and never updated;
* ``date_done`` is set on every write (the model's ``auto_now``);
* ``date_started`` is written only with STARTED; other states keep it.  It
  comes from this process's clock, as ``date_created`` and ``date_done`` do
  (the stock backend asks the database's clock for this one column);
* every other column (status, result, traceback, meta with children, and the
  extended ones: task name, args, kwargs, worker, periodic task name) is the
  stock backend's value, computed by the stock backend's own helpers.

Plain SQL rather than ``bulk_create(update_conflicts=True)``: the same
statement, without a model instance and a transaction around it, costs about
half the CPU (bench/main_lane.py, docs/performance-main-lane.md).

A write the database refuses (``OperationalError``/``InterfaceError``:
locked, connection lost) is made again with Celery's backend retry policy
(``CELERY_RESULT_BACKEND_MAX_RETRIES`` and backoff, queueworks/celery_settings.py),
each retry logged and counted.  When the retries are spent (or the soft time
limit strikes during the write), the running task's own result write raises
``Reject(requeue=True)``: the worker returns the message to its queue instead
of recording FAILURE for a task that ran, and the result is written when the
message runs again (acks late: a task may run more than once).  Counted in
``projectname_result_writes_total{task,outcome="retried"|"requeued"}``.

On another Celery version than the tested one (the hook it fills is Celery's
private ``_store_result``: queueworks/dispatch/compat/celery.py) it stores as the
stock backend does.

Selected by ``CELERY_RESULT_BACKEND`` (``UPSERT_BACKEND`` below); everything
else (reading results, groups, chords, cleanup) is the stock backend's.
``tests/queueworks/core/test_results_backend.py`` compares its rows with the stock
backend's for every state: a django-celery-results release that changes what
the stock backend stores fails there.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from celery import current_task, states
from celery.exceptions import BackendStoreError, Reject, SoftTimeLimitExceeded
from django.db import DatabaseError, InterfaceError, OperationalError, connections, router
from django.utils import timezone
from django_celery_results.backends.database import DatabaseBackend

from queueworks.dispatch.compat.celery import store_result_hook

logger = logging.getLogger(__name__)

UPSERT_BACKEND = "queueworks.core.results_backend:UpsertDatabaseBackend"
# The names under which CELERY_RESULT_BACKEND keeps results in the project's
# database, where the Task API and /ops/ read them.
DATABASE_BACKENDS = ("django-db", UPSERT_BACKEND)
# Databases whose INSERT ... ON CONFLICT (column) DO UPDATE this module writes.
UPSERT_VENDORS = ("postgresql", "sqlite")

# Written by every state, in this order (then date_created, date_started).
STATE_COLUMNS = ("task_id", "status", "result", "traceback", "meta", "content_encoding",
                 "content_type", "periodic_task_name", "task_name", "task_args",
                 "task_kwargs", "worker", "date_done")


@lru_cache(maxsize=None)
def upsert_statement(model, alias: str, started: bool) -> tuple[str, tuple]:
    """(SQL, the model's fields in parameter order) for one state's upsert."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in
              (*STATE_COLUMNS, "date_created", *(("date_started",) if started else ()))]
    # Never on a later write: the insert's time (and the start outside STARTED).
    updated = [field for field in fields if field.name not in ("task_id", "date_created")]
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    assignments = ", ".join(f"{quote(field.column)} = EXCLUDED.{quote(field.column)}"
                            for field in updated)
    sql = (f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders}) "
           f"ON CONFLICT ({quote(model._meta.get_field('task_id').column)}) "
           f"DO UPDATE SET {assignments}")
    return sql, tuple(fields)


def _running(task_id: str | None = None) -> str | None:
    """The name of the task this process is running (``task_id``'s, when given)."""
    request = getattr(current_task, "request", None)
    if request is None or request.called_directly or request.is_eager:
        return None
    if task_id is not None and request.id != task_id:
        return None
    return current_task.name


def _count(task_name: str | None, outcome: str) -> None:
    from queueworks.metrics import names
    from queueworks.metrics.recorder import RECORDER

    if task_name and RECORDER.enabled:
        RECORDER.add(task_name, names.result_key(outcome))


@store_result_hook
class UpsertDatabaseBackend(DatabaseBackend):
    """The stock backend, with one upsert per stored state."""

    def exception_safe_to_retry(self, exc):
        return isinstance(exc, (OperationalError, InterfaceError))

    def on_backend_retryable_error(self, exc):
        from queueworks.metrics import names

        task_name = _running()
        logger.warning("Result write of task %s refused by the database (%s); writing it again.",
                       task_name or "-", exc)
        _count(task_name, names.RESULT_RETRIED)

    def store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        try:
            return super().store_result(task_id, result, state, traceback=traceback,
                                        request=request, **kwargs)
        except (BackendStoreError, DatabaseError, SoftTimeLimitExceeded) as exc:
            from queueworks.metrics import names

            task_name = _running(task_id)
            if task_name is None:  # not this process's running task: nothing to requeue
                raise
            logger.error("Task %s[%s]: its %s result could not be written (%s); its message "
                         "goes back to the queue and the result is written when it runs again.",
                         task_name, task_id, state, exc)
            _count(task_name, names.RESULT_REQUEUED)
            raise Reject(f"result not written: {exc}", requeue=True) from exc

    def store_state(self, task_id, result, status, traceback=None, request=None,
                    using=None):
        model = self.TaskModel
        alias = using or router.db_for_write(model)
        connection = connections[alias]
        if connection.vendor not in UPSERT_VENDORS:
            return self.stock_store_state(task_id, result, status, traceback=traceback,
                                          request=request, using=using)
        content_type, content_encoding, encoded_result = self.encode_content(result)
        meta = {**self._get_meta_from_request(request),
                "children": self.current_task_children(request)}
        _, _, encoded_meta = self.encode_content(meta)
        now = timezone.now()
        values = {
            "task_id": task_id,
            "status": status,
            "result": encoded_result,
            "traceback": traceback,
            "meta": encoded_meta,
            "content_encoding": content_encoding,
            "content_type": content_type,
            # The extended columns (and traceback again, as the stock backend
            # stores it: None unless result_extended is on).
            **self._get_extended_properties(request, traceback),
            "date_done": now,
            "date_created": now,
            "date_started": now,
        }
        sql, fields = upsert_statement(model, alias, status == states.STARTED)
        parameters = [field.get_db_prep_save(values[field.name], connection)
                      for field in fields]
        with connection.cursor() as cursor:
            cursor.execute(sql, parameters)
        return encoded_result
