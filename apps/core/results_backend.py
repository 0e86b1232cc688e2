"""django-celery-results' database backend, each state written in one statement.

The stock backend stores a state through ``TaskResult.objects.store_result``:
a ``get_or_create`` (a SELECT, then an INSERT when the row is new) and, for an
existing row, an UPDATE of every column.  A result-keeping task pays that
twice (STARTED, then SUCCESS or FAILURE): four statements per task.

``UpsertDatabaseBackend`` writes the same columns with one
``INSERT ... ON CONFLICT (task_id) DO UPDATE`` per state (Django's
``bulk_create(update_conflicts=True)``, on PostgreSQL and SQLite alike), so
the row ends exactly as the stock backend leaves it:

* ``date_created`` is set when the row is inserted and never updated;
* ``date_done`` is set on every write (the model's ``auto_now``);
* ``date_started`` is written only with STARTED; other states keep it;
* every other column (status, result, traceback, meta with children, and the
  extended ones: task name, args, kwargs, worker, periodic task name) is the
  stock backend's value, computed by the stock backend's own helpers.

Selected by ``CELERY_RESULT_BACKEND`` (``UPSERT_BACKEND`` below); everything
else (reading results, groups, chords, cleanup) is the stock backend's.
``tests/apps/core/test_results_backend.py`` compares its rows with the stock
backend's for every state: a django-celery-results release that changes what
the stock backend stores fails there.
"""

from __future__ import annotations

from celery import states
from django.db import router
from django.db.models.functions import Now
from django_celery_results.backends.database import DatabaseBackend

UPSERT_BACKEND = "apps.core.results_backend:UpsertDatabaseBackend"
# The names under which CELERY_RESULT_BACKEND keeps results in the project's
# database, where the Task API and /ops/ read them.
DATABASE_BACKENDS = ("django-db", UPSERT_BACKEND)


class UpsertDatabaseBackend(DatabaseBackend):
    """The stock backend, with one upsert per stored state."""

    def _store_result(self, task_id, result, status, traceback=None, request=None,
                      using=None):
        content_type, content_encoding, encoded_result = self.encode_content(result)
        meta = {**self._get_meta_from_request(request),
                "children": self.current_task_children(request)}
        _, _, encoded_meta = self.encode_content(meta)
        columns = {
            "content_encoding": content_encoding,
            "content_type": content_type,
            "meta": encoded_meta,
            "result": encoded_result,
            "status": status,
            "traceback": traceback,
            **self._get_extended_properties(request, traceback),
        }
        if status == states.STARTED:
            # The database's clock, as the stock backend writes it.
            columns["date_started"] = Now()
        model = self.TaskModel
        row = model(task_id=task_id, **columns)
        # Not date_created (the insert's time), nor date_started outside STARTED.
        updated = [*columns, "date_done"]
        model._default_manager.using(using or router.db_for_write(model)).bulk_create(
            [row], update_conflicts=True, unique_fields=["task_id"], update_fields=updated)
        return encoded_result
