"""Django's task API through the real broker and the session's workers:
@task functions run on the worker bound to their queue, results come back
through get_result, priorities overtake a backlog, signals fire."""

import time

import pytest

from apps.testing import django_tasks
from apps.testing.signals import LOG_NAME as SIGNALS_LOG
from queueworks.tasks_backend import api
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _finished(task, result_id, timeout=60):
    def done():
        fetched = task.get_result(result_id)
        return fetched if fetched.is_finished else None

    return wait_for(done, timeout, message=f"{task.module_path}[{result_id}] finished")


def test_a_task_function_runs_on_the_worker_of_its_queue(live_system):
    enqueued = []
    api.task_enqueued.connect(lambda sender, task_result, **kw: enqueued.append(task_result.id),
                              weak=False, dispatch_uid="test-enqueued")
    try:
        result = django_tasks.echo.enqueue({"hello": ["world", 1]})
    finally:
        api.task_enqueued.disconnect(dispatch_uid="test-enqueued")
    assert enqueued == [result.id]
    assert result.status == api.TaskResultStatus.READY and result.enqueued_at
    done = _finished(django_tasks.echo, result.id)
    assert done.status == api.TaskResultStatus.SUCCESSFUL, done.errors
    assert done.return_value == {"hello": ["world", 1]}
    assert done.worker_ids == [live_system.node("main_worker")] and done.attempts == 1
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert done.args == [{"hello": ["world", 1]}]
    # Django's task_started and task_finished fired in the worker, in order.
    signals = live_system.run_dir / SIGNALS_LOG
    lines = wait_for(lambda: [line for line in signals.read_text().splitlines()
                              if result.id in line] if signals.exists() else None, 30,
                     message="task_started/task_finished in the worker")
    assert lines == [f"started {result.id} RUNNING", f"finished {result.id} SUCCESSFUL"]


def test_a_failure_comes_back_with_its_exception_and_traceback(live_system):
    result = django_tasks.fails.enqueue("broken on purpose")
    done = _finished(django_tasks.fails, result.id)
    assert done.status == api.TaskResultStatus.FAILED
    assert [e.exception_class_path for e in done.errors] == ["builtins.ValueError"]
    assert "broken on purpose" in done.errors[0].traceback
    with pytest.raises(ValueError):
        done.return_value  # noqa: B018  (Django raises for a failed task)


def test_a_context_task_sees_its_attempt_and_id(live_system):
    result = django_tasks.attempt_of.enqueue("ctx")
    done = _finished(django_tasks.attempt_of, result.id)
    assert done.return_value == {"token": "ctx", "attempt": 1, "id": result.id}


def test_a_short_run_after_is_a_countdown(live_system):
    from django.utils import timezone
    from datetime import timedelta

    when = timezone.now() + timedelta(seconds=3)
    result = django_tasks.echo.using(run_after=when).enqueue("later")
    assert django_tasks.echo.get_result(result.id).status == api.TaskResultStatus.READY
    done = _finished(django_tasks.echo, result.id, timeout=60)
    assert done.return_value == "later" and done.started_at >= when


def test_a_high_priority_call_overtakes_a_backlog_on_main_worker(live_system, tmp_path):
    log = tmp_path / "order.log"
    # Both pool processes busy, then a backlog of the lowest priority.
    for n in range(2):
        django_tasks.ordered.using(priority=-100).enqueue(f"blocker-{n}", str(log), ms=2500)
    time.sleep(0.5)
    backlog = [django_tasks.ordered.using(priority=-100).enqueue(f"low-{n}", str(log))
               for n in range(40)]
    high = django_tasks.ordered.using(priority=100).enqueue("high", str(log))
    wait_for(lambda: log.exists() and len(log.read_text().split()) >= 43, 120,
             message="backlog and high-priority call done")
    order = log.read_text().split()
    position = order.index("high") - 2  # after the two blockers
    # At most what main_worker holds (2 processes + 2 headroom) runs before it.
    assert position <= 4, order
    assert backlog[-1].id != high.id


def test_the_task_api_starts_an_allowlisted_task_function(live_system, live_http):
    from tests.queueworks.taskapi.conftest import _make_user

    api_client = live_http(_make_user("django-task-operator", operator=True))
    response = api_client.post("/api/v1/tasks/", {"task": "apps.testing.django_tasks.echo",
                                                   "args": ["over http"]})
    assert response.status_code == 202, response.text
    ticket = response.json()
    assert ticket["queue"] == "main_worker"
    done = api_client.wait_state(ticket["task_id"], {"SUCCESS", "FAILURE"}, timeout=60)
    assert done["state"] == "SUCCESS" and done["result"] == "over http", done
    assert done["worker"] == live_system.node("main_worker")
    # The same task through Django's API: one record, one result.
    assert django_tasks.echo.get_result(ticket["task_id"]).return_value == "over http"
