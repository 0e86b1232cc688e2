"""Units of the Task API: allowlist binding, migration, cleanup, worker guard."""

import importlib
from types import SimpleNamespace

import pytest
from celery.worker import state as worker_state
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django_celery_results.models import TaskResult

from queueworks.taskapi.allowlist import ALLOWLIST
from queueworks.taskapi.models import RECORDED_HEADER, TaskRecord
from queueworks.taskapi.retention import result_expires, task_results_cleanup
from queueworks.taskapi.services import DiagnosticError, diagnostic_run
from queueworks.taskapi.signals import refuse_cancelled_task

DIAGNOSE = ALLOWLIST["queueworks.taskapi.tasks.diagnose"]


def test_bind_matches_positional_and_keyword_arguments():
    values, errors = DIAGNOSE.bind([1.5], {"fail": True})
    assert errors == {} and values == {"seconds": 1.5, "fail": True}
    _, errors = DIAGNOSE.bind([True], {"seconds": 1, "other": 2})
    assert errors == {
        "args": ["args[0] (seconds) must be a number"],
        "kwargs": ["'seconds' is also given positionally in args",
                   "unknown argument 'other' (accepted: seconds, fail, message)"],
    }
    _, errors = ALLOWLIST["queueworks.core.tasks.probe"].bind([], {})
    assert errors == {"kwargs": ["token is required"]}
    _, errors = DIAGNOSE.bind([float("nan")], {})
    assert errors == {"args": ["args[0] (seconds) must be a finite number"]}


def test_every_allowlisted_queue_is_in_the_topology():
    from queueworks.core.checks import project_task_names
    from queueworks.taskapi.checks import check_allowlist

    assert check_allowlist(ALLOWLIST, project_task_names()) == []
    assert [e.id for e in check_allowlist(ALLOWLIST, set())] == ["taskapi.E001"] * len(ALLOWLIST)


def test_an_allowlisted_task_whose_route_ignores_results_is_refused(monkeypatch):
    from dataclasses import replace

    from queueworks.core.checks import project_task_names
    from queueworks.taskapi import checks
    from projectname.topology import TOPOLOGY

    name = "queueworks.core.tasks.probe"
    routes = tuple(replace(r, ignore_result=True) if r.task == name else r
                   for r in TOPOLOGY.routes)
    monkeypatch.setattr(checks, "TOPOLOGY", replace(TOPOLOGY, routes=routes))
    errors = checks.check_allowlist(ALLOWLIST, project_task_names())
    assert [(e.id, name in e.msg) for e in errors] == [("taskapi.E004", True)]


@pytest.mark.django_db
def test_migration_creates_the_task_operators_group_with_the_permission():
    migration = importlib.import_module("queueworks.taskapi.migrations.0002_task_operators_group")
    Group.objects.filter(name="task operators").delete()
    state = MigrationExecutor(connection).loader.project_state(
        ("taskapi", "0002_task_operators_group"))
    migration.create_group(state.apps, None)
    group = Group.objects.get(name="task operators")
    assert [p.codename for p in group.permissions.all()] == ["operate_tasks"]


@pytest.mark.django_db
def test_cleanup_removes_results_and_records_older_than_result_expires():
    now = timezone.now()
    old = now - 2 * result_expires()
    for task_id, status in [("old-done", "SUCCESS"), ("old-queued", "PENDING"),
                            ("new-done", "SUCCESS")]:
        TaskResult.objects.create(task_id=task_id, status=status)
        TaskRecord.objects.create(task_id=task_id, task_name="x", queue="celery")
    TaskResult.objects.filter(task_id__startswith="old").update(date_done=old)
    TaskRecord.objects.filter(task_id__startswith="old").update(accepted_at=old)

    assert task_results_cleanup(now=now) == {"results": 2, "records": 2}
    assert set(TaskResult.objects.values_list("task_id", flat=True)) == {"new-done"}
    assert set(TaskRecord.objects.values_list("task_id", flat=True)) == {"new-done"}


def _received(task_id, *, headers=None, redelivered=False):
    message = SimpleNamespace(headers={"id": task_id, **(headers or {})})
    return SimpleNamespace(id=task_id, name="x", message=message,
                           delivery_info={"redelivered": redelivered})


@pytest.mark.django_db
def test_worker_guard_revokes_a_cancelled_id_on_receipt():
    TaskRecord.objects.create(task_id="guard-1", task_name="x", queue="celery",
                              cancelled_at=timezone.now())
    TaskRecord.objects.create(task_id="guard-2", task_name="x", queue="celery")
    try:
        refuse_cancelled_task(request=_received("guard-1", headers={RECORDED_HEADER: True}))
        refuse_cancelled_task(request=_received("guard-2", headers={RECORDED_HEADER: True}))
        assert "guard-1" in worker_state.revoked
        assert "guard-2" not in worker_state.revoked
    finally:
        worker_state.revoked.discard("guard-1")


@pytest.mark.django_db
def test_worker_guard_queries_only_messages_that_can_have_been_cancelled(
        django_assert_num_queries):
    TaskRecord.objects.create(task_id="guard-3", task_name="x", queue="celery",
                              cancelled_at=timezone.now())
    try:
        # A first delivery the Task API did not publish: unknown to the API, no query.
        with django_assert_num_queries(0):
            refuse_cancelled_task(request=_received("guard-3"))
        assert "guard-3" not in worker_state.revoked
        # A redelivery and a retry may have been cancelled: both are looked up.
        with django_assert_num_queries(1):
            refuse_cancelled_task(request=_received("guard-3", redelivered=True))
        assert "guard-3" in worker_state.revoked
        worker_state.revoked.discard("guard-3")
        with django_assert_num_queries(1):
            refuse_cancelled_task(request=_received("guard-3", headers={"retries": 1}))
        assert "guard-3" in worker_state.revoked
    finally:
        worker_state.revoked.discard("guard-3")


def test_diagnostic_run_reports_progress_and_fails_on_demand():
    steps = []
    assert diagnostic_run(seconds=2.5, on_progress=lambda c, t: steps.append((c, t)),
                          sleep=lambda s: None) == {"message": "diagnostic", "seconds": 2.5}
    assert steps == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(DiagnosticError, match="nope"):
        diagnostic_run(fail=True, message="nope")


def test_cleanup_is_the_beat_backend_cleanup_entry_on_a_consumed_queue():
    from projectname.topology import TOPOLOGY

    entry = next(s for s in TOPOLOGY.schedules if s.name == "celery.backend_cleanup")
    assert entry.task == "celery.backend_cleanup"
    assert TOPOLOGY.consumers_of(entry.queue)
    # Also when beat installs its own default entry (no queue): the route holds.
    assert TOPOLOGY.queue_for("celery.backend_cleanup") == entry.queue



def test_a_schema_class_other_than_drf_spectaculars_is_named_with_the_setting():
    from drf_spectacular.openapi import AutoSchema
    from rest_framework.schemas.openapi import AutoSchema as RestFrameworkSchema

    from queueworks.taskapi.checks import check_schema_class

    class ProjectSchema(AutoSchema):
        pass

    assert check_schema_class(AutoSchema) == [] and check_schema_class(ProjectSchema) == []
    (warning,) = check_schema_class(RestFrameworkSchema)
    assert warning.id == "taskapi.W001"
    assert '"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"' in warning.hint
