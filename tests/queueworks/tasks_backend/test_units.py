"""The Django task backend without a broker: validation, priorities, the
outbox rows an enqueue writes in the caller's transaction, results."""

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_celery_results.models import TaskResult as ResultRow

from apps.testing import django_tasks
from queueworks.reliability.models import DelayedTask
from queueworks.taskapi.models import TaskRecord
from queueworks.tasks_backend import api
from queueworks.tasks_backend.priorities import amqp_priority
from queueworks.tasks_backend.worker import celery_task_for, register_routed_django_tasks


def test_priorities_map_onto_amqp_levels_around_the_default():
    levels = {p: amqp_priority(p, max_priority=9, default=5) for p in (-100, -21, -20, -1, 0, 1,
                                                                      25, 26, 99, 100)}
    assert levels == {-100: 0, -21: 3, -20: 4, -1: 4, 0: 5, 1: 6, 25: 6, 26: 7, 99: 9, 100: 9}
    # Monotonic over the whole range: a higher Django priority never runs later.
    mapped = [amqp_priority(p, max_priority=9, default=5) for p in range(-100, 101)]
    assert mapped == sorted(mapped) and mapped[0] == 0 and mapped[-1] == 9


def test_a_function_routed_nowhere_is_refused_at_decoration():
    with pytest.raises(api.InvalidTask, match="routed nowhere"):
        api.Task(priority=0, func=_unrouted, backend="default", queue_name="default",
                 run_after=None)


def _unrouted():
    return None


def test_an_unknown_queue_name_is_refused():
    with pytest.raises(api.InvalidTask, match="not a queue of the topology"):
        django_tasks.echo.using(queue_name="nowhere")
    # A declared queue is accepted.
    assert django_tasks.echo.using(queue_name="heavy").queue_name == "heavy"


def test_a_priority_on_a_queue_without_priorities_is_refused():
    with pytest.raises(api.InvalidTask, match="has no priorities"):
        django_tasks.noop.using(priority=10)


@pytest.mark.django_db(transaction=True)
def test_nothing_is_written_when_the_caller_rolls_back():
    with pytest.raises(RuntimeError), transaction.atomic():
        result = django_tasks.echo.enqueue("x")
        assert TaskRecord.objects.filter(task_id=result.id).exists()
        raise RuntimeError("roll back")
    assert not TaskRecord.objects.filter(task_id=result.id).exists()
    assert not ResultRow.objects.filter(task_id=result.id).exists()


@pytest.mark.django_db
def test_a_far_run_after_waits_in_the_database_not_in_a_worker(settings):
    settings.QUEUEWORKS_RELIABILITY_LONG_DELAY_SECONDS = 60
    when = timezone.now() + timedelta(hours=2)
    result = django_tasks.echo.using(run_after=when).enqueue({"a": 1})
    stored = DelayedTask.objects.get(task_id=result.id)
    assert stored.eta == when and stored.task_name == "apps.testing.django_tasks.echo"
    assert stored.options["queue"] == "main_worker" and stored.options["priority"] == 5
    # The outbox sweep leaves it to the delayed dispatch.
    assert TaskRecord.objects.get(task_id=result.id).confirmed_at is not None
    fetched = django_tasks.echo.get_result(result.id)
    assert fetched.status == api.TaskResultStatus.READY and fetched.kwargs == {}
    assert fetched.args == [{"a": 1}]


@pytest.mark.django_db
def test_results_are_read_from_the_rows_the_workers_write():
    result = django_tasks.fails.enqueue("boom")
    ResultRow.objects.filter(task_id=result.id).update(
        status="FAILURE", worker="main_worker@host", traceback="Traceback ...\nValueError: boom",
        result=json.dumps({"exc_type": "ValueError", "exc_module": "builtins",
                           "exc_message": ["boom"]}),
        date_started=timezone.now(), date_done=timezone.now())
    failed = django_tasks.fails.get_result(result.id)
    assert failed.status == api.TaskResultStatus.FAILED
    assert [e.exception_class_path for e in failed.errors] == ["builtins.ValueError"]
    assert "ValueError: boom" in failed.errors[0].traceback
    assert failed.worker_ids == ["main_worker@host"] and failed.attempts == 1
    assert failed.enqueued_at and failed.started_at and failed.finished_at
    with pytest.raises(api.TaskResultDoesNotExist):
        django_tasks.fails.get_result("no-such-id")


def test_routed_django_tasks_are_registered_as_celery_tasks_of_their_name():
    from projectname.celery import app

    register_routed_django_tasks(app)
    for name in ("echo", "fails", "attempt_of", "ordered", "noop"):
        assert f"apps.testing.django_tasks.{name}" in app.tasks
    celery_task = celery_task_for(app, django_tasks.echo)
    assert celery_task.name == "apps.testing.django_tasks.echo"
    # The lane's options come from the route, as for any task.
    noop = app.tasks["apps.testing.django_tasks.noop"]
    assert noop.name == "apps.testing.django_tasks.noop"


def test_the_system_check_names_an_unroutable_function(monkeypatch):
    from queueworks.tasks_backend import checks
    from queueworks.tasks_backend.api import task_backends

    backend = task_backends["default"]
    unroutable = replace(django_tasks.echo, queue_name="default")
    monkeypatch.setattr(backend, "queue_for", lambda task: (_ for _ in ()).throw(
        api.InvalidTask(f"{task.module_path} is routed nowhere")))
    monkeypatch.setattr(checks, "django_tasks_of_installed_apps",
                        lambda: iter([("apps.testing.django_tasks", unroutable)]))
    errors = checks.django_task_errors(backend)
    assert [e.id for e in errors] == ["queueworks_tasks.E001"]
    assert "apps.testing.django_tasks.echo" in errors[0].msg
