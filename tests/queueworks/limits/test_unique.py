"""Unique tasks without a broker: the claim written with the outbox record,
the duplicate answered with the holder's id, the claim renewed at start and
freed at the end, taken over past its lease (queueworks/limits/unique.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from celery import states
from django.db import transaction
from django.utils import timezone

from queueworks.limits.declaration import Unique

TASK = "apps.testing.tasks.unique_job"
DJANGO_TASK = "apps.testing.django_tasks.unique_echo"

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    """Publishing replaced by a list of the published ids (no broker here)."""
    import queueworks.taskapi.recorded as services

    sent: list[str] = []
    monkeypatch.setattr(services, "_publish_start", lambda **kw: sent.append(kw["task_id"]))
    return sent


def _accept(tenant: str, **extra):
    from queueworks.taskapi.services import recorded_task_accept

    with transaction.atomic():
        claim = recorded_task_accept(task_name=TASK, args=[],
                                     kwargs={"tenant_id": tenant, "run_id": "r", **extra},
                                     queue="main_worker", priority=None, run_at=None)
    return claim


def _claims():
    from queueworks.limits.models import UniqueClaim

    return {c.task_id: c for c in UniqueClaim.objects.all()}


def test_a_second_enqueue_with_the_key_returns_the_first_id_and_sends_nothing(
        published, django_capture_on_commit_callbacks):
    from queueworks.limits.models import UniqueTally
    from queueworks.taskapi.models import TaskRecord

    with django_capture_on_commit_callbacks(execute=True):
        first = _accept("acme")
        second = _accept("acme", seconds=1)  # other arguments, same key
        other = _accept("globex")
    assert not first.duplicate and second.duplicate and not other.duplicate
    assert second.task_id == first.task_id != other.task_id
    assert published == [first.task_id, other.task_id]
    assert TaskRecord.objects.filter(task_name=TASK).count() == 2
    assert set(_claims()) == {first.task_id, other.task_id}
    assert UniqueTally.objects.get(task_name=TASK).duplicates == 1


def test_the_claim_rolls_back_with_the_callers_transaction(published):
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        _accept("acme")
        raise Rollback
    assert _claims() == {} and published == []
    assert not _accept("acme").duplicate


def test_a_call_without_the_keys_parameter_is_refused_naming_it(published):
    from queueworks.taskapi.errors import TaskValidationError
    from queueworks.taskapi.services import recorded_task_accept

    with pytest.raises(TaskValidationError) as refused:
        recorded_task_accept(task_name=TASK, args=[], kwargs={"run_id": "r"},
                             queue="main_worker", priority=None, run_at=None)
    assert "tenant_id" in refused.value.fields
    assert _claims() == {}


def test_a_positional_key_is_the_same_key_as_a_keyword_one(published):
    from queueworks.taskapi.services import recorded_task_accept

    first = recorded_task_accept(task_name=TASK, args=["acme", "r"], kwargs={},
                                 queue="main_worker", priority=None, run_at=None)
    assert _accept("acme").task_id == first.task_id


def test_start_renews_the_claim_as_running_and_the_end_frees_it(published):
    from queueworks.limits.models import UniqueClaim
    from queueworks.limits.unique import unique_run_admit
    from queueworks.limits.unique_hooks import release_after_run
    from queueworks.conf import celery_app

    claim = _accept("acme")
    assert unique_run_admit(task_name=TASK, task_id=claim.task_id, args=[],
                            kwargs={"tenant_id": "acme", "run_id": "r"})
    held = UniqueClaim.objects.get(task_id=claim.task_id)
    assert held.state == UniqueClaim.RUNNING
    # Running lease: the route's time limit (10 s) is under lease_seconds=15.
    assert timedelta(seconds=14) < held.expires_at - timezone.now() <= timedelta(seconds=15)
    task = celery_app().tasks[TASK]
    release_after_run(sender=task, task_id=claim.task_id, state=states.RETRY, retval=None)
    assert UniqueClaim.objects.get(task_id=claim.task_id).state == UniqueClaim.WAITING
    assert _accept("acme").duplicate  # a retry keeps the key
    release_after_run(sender=task, task_id=claim.task_id, state=states.SUCCESS, retval=None)
    assert _claims() == {}
    assert not _accept("acme").duplicate


@pytest.mark.parametrize("state", [states.FAILURE, states.REVOKED, "REJECTED"])
def test_every_final_end_frees_the_key(published, state):
    from queueworks.limits.unique_hooks import release_after_run
    from queueworks.conf import celery_app

    claim = _accept("acme")
    release_after_run(sender=celery_app().tasks[TASK], task_id=claim.task_id, state=state,
                      retval=None)
    assert _claims() == {}


def test_a_requeued_rejection_keeps_the_key(published):
    from celery.exceptions import Reject

    from queueworks.limits.unique_hooks import release_after_run
    from queueworks.conf import celery_app

    claim = _accept("acme")
    release_after_run(sender=celery_app().tasks[TASK], task_id=claim.task_id, state="REJECTED",
                      retval=Reject("again", requeue=True))
    assert set(_claims()) == {claim.task_id}


def test_past_its_lease_the_key_is_taken_over_and_the_old_message_runs_nothing(published):
    from queueworks.limits.models import UniqueClaim, UniqueTally
    from queueworks.limits.unique import unique_run_admit

    killed = _accept("acme")
    assert unique_run_admit(task_name=TASK, task_id=killed.task_id, args=[],
                            kwargs={"tenant_id": "acme", "run_id": "r"})
    # Its worker was SIGKILLed and nobody ran the message again within the lease.
    UniqueClaim.objects.filter(task_id=killed.task_id).update(
        expires_at=timezone.now() - timedelta(seconds=1))
    fresh = _accept("acme")
    assert not fresh.duplicate and fresh.task_id != killed.task_id
    # The killed task's message arrives late: it must not run beside the new one.
    assert not unique_run_admit(task_name=TASK, task_id=killed.task_id, args=[],
                                kwargs={"tenant_id": "acme", "run_id": "r"})
    assert unique_run_admit(task_name=TASK, task_id=fresh.task_id, args=[],
                            kwargs={"tenant_id": "acme", "run_id": "r"})
    tally = UniqueTally.objects.get(task_name=TASK)
    assert (tally.taken_over, tally.superseded) == (1, 1)


def test_a_redelivered_message_keeps_its_claim(published):
    from queueworks.limits.unique import unique_run_admit

    claim = _accept("acme")
    for _ in range(2):  # first delivery, then the redelivery after a crash
        assert unique_run_admit(task_name=TASK, task_id=claim.task_id, args=[],
                                kwargs={"tenant_id": "acme", "run_id": "r"})
    assert set(_claims()) == {claim.task_id}


def test_cancelling_a_waiting_unique_task_frees_its_key(published, monkeypatch):
    import queueworks.taskapi.services as services

    monkeypatch.setattr(services, "_broadcast_revoke", lambda *a, **k: None)
    claim = _accept("acme")
    services.task_cancel(task_id=claim.task_id)
    assert _claims() == {}
    assert not _accept("acme").duplicate


def test_a_message_published_without_a_claim_takes_the_key_at_start(published):
    from queueworks.limits.unique import unique_run_admit

    raw = str(uuid.uuid4())  # e.g. tasks_enqueue_bulk, which writes no claim
    assert unique_run_admit(task_name=TASK, task_id=raw, args=[],
                            kwargs={"tenant_id": "acme", "run_id": "r"})
    assert _accept("acme").task_id == raw


def test_task_delay_goes_through_the_outbox_and_answers_with_the_holder(
        published, django_capture_on_commit_callbacks, settings):
    from apps.testing.tasks import unique_job
    from queueworks.limits.unique_enqueue import UniqueEnqueueRefused
    from queueworks.taskapi.models import TaskRecord

    settings.CELERY_TASK_ALWAYS_EAGER = False
    with django_capture_on_commit_callbacks(execute=True):
        first = unique_job.delay("acme", "r")
        second = unique_job.apply_async(kwargs={"tenant_id": "acme", "run_id": "x"},
                                        countdown=5)
    assert first.id == second.id and published == [first.id]
    assert TaskRecord.objects.filter(task_id=first.id).exists()
    with pytest.raises(UniqueEnqueueRefused, match="link"):
        unique_job.apply_async(("other", "r"), link=unique_job.s("x", "y"))
    with pytest.raises(UniqueEnqueueRefused, match="expires"):
        unique_job.apply_async(("other", "r"), expires=10)


def test_the_django_task_backend_returns_the_holders_result(published):
    from apps.testing.django_tasks import unique_echo

    first = unique_echo.enqueue("acme", value="one")
    second = unique_echo.enqueue(tenant_id="acme", value="two")
    third = unique_echo.enqueue(tenant_id="globex")
    assert second.id == first.id != third.id
    assert list(second.args) == ["acme"] and second.kwargs == {"value": "one"}


def test_the_task_api_answers_a_duplicate_200_with_the_first_id(
        client_for, operator, published):
    client = client_for(operator)
    body = {"task": TASK, "kwargs": {"tenant_id": "acme", "run_id": "r"}}
    first = client.post("/api/v1/tasks/", body, format="json")
    second = client.post("/api/v1/tasks/", body, format="json")
    assert first.status_code == 202, first.content
    assert "duplicate" not in first.json()
    assert second.status_code == 200, second.content
    assert second.json()["task_id"] == first.json()["task_id"]
    assert second.json()["duplicate"] is True
    bulk = client.post("/api/v1/tasks/bulk/", {"task": TASK, "kwargs_list": [
        {"tenant_id": "x", "run_id": "r"}]}, format="json")
    assert bulk.status_code == 400 and "unique" in bulk.json()["errors"]["task"][0], bulk.content


def test_the_system_check_refuses_a_key_the_task_does_not_take():
    import inspect

    from queueworks.core.topology import Queue, Route, Topology, Worker
    from queueworks.limits.checks_unique_fair import limits_declaration_problems
    from queueworks.limits.declaration import FairShare

    def job(tenant_id, value=None):
        pass

    topology = Topology(
        queues=(Queue("q", "test"),), workers=(Worker("w", ("q",), time_limit=60),),
        routes=(Route("a.job", "q", unique=Unique(key=("tenant_id", "customer"))),
                Route("b.job", "q", unique=Unique(key="tenant_id", lease_seconds=30)),
                Route("c.job", "q", fair_share=FairShare(key="tenant")),
                Route("d.gone", "q", unique=Unique(key="tenant_id"))),
        schedules=())
    found = limits_declaration_problems(
        topology, lambda name: None if name == "d.gone" else inspect.signature(job))
    ids = sorted(problem.id for problem in found)
    assert ids == ["queueworks_limits.E101", "queueworks_limits.E102", "queueworks_limits.E104", "queueworks_limits.E105", "queueworks_limits.W103"]
    assert "'customer'" in next(p.msg for p in found if p.id == "queueworks_limits.E101")


def test_the_project_declarations_pass_the_check():
    from queueworks.limits.checks_unique_fair import limits_declaration_check

    assert limits_declaration_check() == []


def test_a_revoked_message_frees_the_key(published):
    from types import SimpleNamespace

    from queueworks.limits.unique_hooks import release_revoked
    from queueworks.conf import celery_app

    claim = _accept("acme")
    release_revoked(sender=celery_app().tasks[TASK],
                    request=SimpleNamespace(id=claim.task_id, name=None))
    assert _claims() == {}


@pytest.mark.parametrize("acks_on_timeout,freed", [(True, True), (False, False)])
def test_a_run_killed_at_its_hard_time_limit_frees_the_key_unless_requeued(
        published, monkeypatch, acks_on_timeout, freed):
    """Celery's main process sends task_failure(TimeLimitExceeded) after it
    killed the pool process; the message is acknowledged (no rerun) unless
    the task requeues on timeout."""
    from celery.exceptions import TimeLimitExceeded
    from celery.signals import task_failure

    from queueworks.conf import celery_app

    task = celery_app().tasks[TASK]
    monkeypatch.setattr(task, "acks_on_failure_or_timeout", acks_on_timeout)
    claim = _accept("acme")
    task_failure.send(sender=task, task_id=claim.task_id, exception=TimeLimitExceeded(10),
                      args=[], kwargs={}, traceback=None, einfo=None)
    assert (_claims() == {}) is freed
    # Any other failure is the end of the run's own: task_postrun frees it.
    claim = _accept("beta")
    task_failure.send(sender=task, task_id=claim.task_id, exception=ValueError("x"),
                      args=[], kwargs={}, traceback=None, einfo=None)
    assert claim.task_id in _claims()
