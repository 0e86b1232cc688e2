"""The upsert results backend leaves the same rows as django-celery-results'
stock backend, in one statement per stored state."""

import uuid

import pytest
from celery import states
from celery.app.task import Context
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_results.backends.database import DatabaseBackend
from django_celery_results.models import TaskResult

from queueworks.core.results_backend import UpsertDatabaseBackend
from projectname.celery import app

pytestmark = pytest.mark.django_db

# Differ by design between two rows of two tasks: the row's id, the task's id
# and the times (compared on their own below).
TIMES = ("date_created", "date_started", "date_done")
SKIPPED = ("id", "task_id", *TIMES)


def _request(task_id: str) -> Context:
    return Context(id=task_id, task="apps.testing.tasks.noop", args=[1, "two"],
                   kwargs={"n": 3}, argsrepr="[1, 'two']", kwargsrepr="{'n': 3}",
                   hostname="main_worker@host", periodic_task_name="nightly",
                   meta={"tenant": "acme"}, children=[])


def _failure():
    try:
        raise ValueError("no such recipient")
    except ValueError as error:
        return error, "Traceback (most recent call last):\nValueError: no such recipient\n"


def _store_sequence(backend, task_id: str, sequence) -> dict:
    request = _request(task_id)
    for status, result, traceback in sequence:
        backend.store_result(task_id, result, status, traceback=traceback, request=request)
    return TaskResult.objects.filter(task_id=task_id).values().get()


def _sequences():
    error, traceback = _failure()
    return {
        "started, success": [(states.STARTED, {"pid": 1}, None),
                             (states.SUCCESS, {"sent": 2, "to": ["a", "b"]}, None)],
        "started, failure": [(states.STARTED, {"pid": 1}, None),
                             (states.FAILURE, error, traceback)],
        "started, retry, started, success": [(states.STARTED, {"pid": 1}, None),
                                             (states.RETRY, error, traceback),
                                             (states.STARTED, {"pid": 2}, None),
                                             (states.SUCCESS, "done", None)],
        "success without a started row": [(states.SUCCESS, 42, None)],
        "failure without a started row": [(states.FAILURE, error, traceback)],
    }


@pytest.mark.parametrize("name", list(_sequences()))
def test_every_state_sequence_leaves_the_stock_backends_row(name):
    sequence = _sequences()[name]
    stock = _store_sequence(DatabaseBackend(app=app), f"stock-{uuid.uuid4()}", sequence)
    upsert = _store_sequence(UpsertDatabaseBackend(app=app), f"upsert-{uuid.uuid4()}", sequence)
    assert {k: v for k, v in upsert.items() if k not in SKIPPED} == \
        {k: v for k, v in stock.items() if k not in SKIPPED}
    # The extended columns and meta are really there (not both empty).
    assert upsert["task_name"] == "apps.testing.tasks.noop" and upsert["worker"]
    assert '"tenant": "acme"' in upsert["meta"]
    for column in TIMES:
        assert (upsert[column] is None) == (stock[column] is None), column
    # And the backend reads its own row back as the stock one does.
    upsert_meta = UpsertDatabaseBackend(app=app).get_task_meta(upsert["task_id"])
    stock_meta = DatabaseBackend(app=app).get_task_meta(stock["task_id"])
    for key in ("status", "task_name", "args", "kwargs", "worker", "tenant"):
        assert upsert_meta.get(key) == stock_meta.get(key), key
    assert type(upsert_meta["result"]) is type(stock_meta["result"])


def test_a_later_state_keeps_the_insert_and_start_times():
    backend, task_id = UpsertDatabaseBackend(app=app), f"times-{uuid.uuid4()}"
    request = _request(task_id)
    backend.store_result(task_id, None, states.STARTED, request=request)
    started = TaskResult.objects.get(task_id=task_id)
    assert started.date_started is not None and started.status == states.STARTED
    backend.store_result(task_id, "ok", states.SUCCESS, request=request)
    done = TaskResult.objects.get(task_id=task_id)
    assert done.status == states.SUCCESS and done.pk == started.pk
    assert done.date_created == started.date_created
    assert done.date_started == started.date_started
    assert done.date_done >= started.date_done


@pytest.mark.parametrize("backend_class, statements", [(DatabaseBackend, 2),
                                                       (UpsertDatabaseBackend, 1)])
def test_statements_per_stored_state(backend_class, statements):
    backend, task_id = backend_class(app=app), f"count-{uuid.uuid4()}"
    request = _request(task_id)
    counts = []
    for status in (states.STARTED, states.SUCCESS):
        with CaptureQueriesContext(connection) as queries:
            backend.store_result(task_id, "ok", status, request=request)
        counts.append(sum(1 for q in queries.captured_queries
                          if q["sql"].split()[0].upper() in ("SELECT", "INSERT", "UPDATE")))
    assert counts == [statements, statements]


def test_a_database_without_the_upsert_goes_the_stock_way(monkeypatch):
    from queueworks.core import results_backend

    monkeypatch.setattr(results_backend, "UPSERT_VENDORS", ("oracle",))
    backend, task_id = UpsertDatabaseBackend(app=app), f"stock-way-{uuid.uuid4()}"
    with CaptureQueriesContext(connection) as queries:
        backend.store_result(task_id, "ok", states.SUCCESS, request=_request(task_id))
    assert queries.captured_queries[0]["sql"].startswith("SELECT")
    assert TaskResult.objects.get(task_id=task_id).status == states.SUCCESS
