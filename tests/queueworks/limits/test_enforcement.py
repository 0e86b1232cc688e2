"""A task over its limit waits (a rate limit: published again, delayed; a
concurrency limit: parked until a slot is handed to it) and ends without
holding its process, without a failure or retry; within it, it runs and
gives its slot back whatever the outcome."""

from __future__ import annotations

import time
import uuid

import pytest
from celery.app.trace import build_tracer
from celery.canvas import Signature

from queueworks.limits.enforcement import SINCE_HEADER, LimitDeferred, limits_enter, limits_exit
from queueworks.limits.handoff import GRANT_HEADER
from queueworks.limits.models import ConcurrencySlot, LimitKey, LimitTally, LimitWaiter
from queueworks.limits.rules import task_limits

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
CONCURRENCY = "apps.testing.tasks.limited_concurrency"
RATE = "apps.testing.tasks.limited_rate"


@pytest.fixture
def app():
    from projectname.celery import app

    app.loader.import_default_modules()
    return app


@pytest.fixture
def published(monkeypatch):
    """What is published again, instead of sending it."""
    sent = []
    monkeypatch.setattr(Signature, "apply_async", lambda self, *a, **kw: sent.append(self))
    return sent


def request_for(task, args=(), kwargs=None, **headers):
    from celery.app.task import Context

    return Context(id=str(uuid.uuid4()), task=task.name, args=list(args), kwargs=kwargs or {},
                   delivery_info={"exchange": "", "routing_key": "main_worker"},
                   called_directly=False, is_eager=False, **headers)


def test_the_limits_come_from_the_route():
    limits = task_limits(CONCURRENCY)
    assert limits.concurrency.running == 1 and limits.concurrency.key == "tenant_id"
    assert limits.lease_seconds == 8
    assert task_limits(RATE).rate.starts == 5
    assert task_limits("apps.testing.tasks.noop") is None


def test_a_task_without_limits_costs_no_query(app, django_assert_num_queries):
    task = app.tasks["apps.testing.tasks.noop"]
    with django_assert_num_queries(0):
        assert limits_enter(task, request_for(task), (), {}) is None


def test_within_the_limit_the_slot_is_held_then_given_back(app, published):
    task = app.tasks[CONCURRENCY]
    request = request_for(task, kwargs={"tenant_id": "acme"})
    held = limits_enter(task, request, (), {"tenant_id": "acme"})
    assert held == [(f"{CONCURRENCY}:concurrency", "acme")]
    assert ConcurrencySlot.objects.get().task_id == request.id
    limits_exit(task, request, held)
    assert not ConcurrencySlot.objects.exists()
    assert LimitTally.objects.get().started == 1
    assert published == []


def test_over_the_limit_the_call_is_parked_and_handed_the_slot_when_it_frees(app, published):
    task = app.tasks[CONCURRENCY]
    first = request_for(task)
    held = limits_enter(task, first, ("acme",), {})
    second = request_for(task, taskapi_recorded=1, **{"x-death": [{"count": 1}]})
    with pytest.raises(LimitDeferred):
        limits_enter(task, second, ("acme",), {"ms": 5})
    assert published == []  # parked: nothing polls
    waiter = LimitWaiter.objects.get()
    assert (waiter.task_id, waiter.key, waiter.state) == (second.id, "acme", LimitWaiter.PARKED)
    assert LimitTally.objects.get().refused == 1
    # Another key is not held up.
    assert limits_enter(task, request_for(task), ("other",), {})
    # The holder ends: its slot is handed to the parked call, whose message
    # is published at once with the slot's token.
    limits_exit(task, first, held)
    [again] = published
    assert again.options["task_id"] == second.id
    assert not again.options.get("countdown")
    headers = again.options["headers"]
    assert headers[SINCE_HEADER] <= time.time()
    assert headers["taskapi_recorded"] == 1  # still cancellable
    assert "x-death" not in headers
    assert not again.options.get("retries")  # not a retry
    assert (list(again.args), again.kwargs) == (["acme"], {"ms": 5})
    slot = ConcurrencySlot.objects.get(key="acme")
    assert (slot.task_id, slot.grant) == (second.id, headers[GRANT_HEADER])
    # It arrives and runs on the slot held for it.
    back = request_for(task, **{SINCE_HEADER: headers[SINCE_HEADER],
                                GRANT_HEADER: headers[GRANT_HEADER]})
    back.id = second.id
    assert limits_enter(task, back, ("acme",), {"ms": 5})
    assert not LimitWaiter.objects.exists()


def test_a_rate_limited_call_is_published_again_with_a_delay(app, published):
    task = app.tasks[RATE]
    assert task_limits(RATE).rate.burst == 0
    assert limits_enter(task, request_for(task), ("acme",), {}) == []
    over = request_for(task, taskapi_recorded=1)
    with pytest.raises(LimitDeferred):
        limits_enter(task, over, ("acme",), {})
    [again] = published
    assert again.options["task_id"] == over.id
    assert 1.0 <= again.options["countdown"] <= 1.5
    assert again.options["headers"]["taskapi_recorded"] == 1
    assert LimitWaiter.objects.get().state == LimitWaiter.DEFERRED


def test_a_call_that_waited_counts_its_wait_and_leaves_the_waiting_list(app, published):
    task = app.tasks[CONCURRENCY]
    holder = request_for(task)
    held = limits_enter(task, holder, ("acme",), {})
    waiting = request_for(task, **{SINCE_HEADER: time.time() - 2.0})
    with pytest.raises(LimitDeferred):
        limits_enter(task, waiting, ("acme",), {})
    limits_exit(task, holder, held)
    headers = published[0].options["headers"]
    back = request_for(task, **{SINCE_HEADER: headers[SINCE_HEADER],
                                GRANT_HEADER: headers[GRANT_HEADER]})
    back.id = waiting.id
    assert limits_enter(task, back, ("acme",), {})
    assert not LimitWaiter.objects.exists()
    tally = LimitTally.objects.get()
    assert (tally.started, tally.refused) == (2, 1)
    assert tally.waited_seconds >= 2.0


def test_a_hand_over_whose_publish_fails_leaves_the_call_parked_for_the_sweep(app, monkeypatch):
    from queueworks.limits.handoff import limits_wake_waiters

    task = app.tasks[CONCURRENCY]
    holder = request_for(task)
    held = limits_enter(task, holder, ("acme",), {})
    with pytest.raises(LimitDeferred):
        limits_enter(task, request_for(task), ("acme",), {})

    def broker_down(self, *args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(Signature, "apply_async", broker_down)
    limits_exit(task, holder, held)
    # The holder's slot is given back; the call is still parked, nothing lost.
    assert not ConcurrencySlot.objects.exists()
    assert LimitWaiter.objects.get().state == LimitWaiter.PARKED
    sent = []
    monkeypatch.setattr(Signature, "apply_async", lambda self, *a, **kw: sent.append(self))
    assert limits_wake_waiters() == 1
    assert len(sent) == 1 and ConcurrencySlot.objects.get().grant


def test_a_revoked_woken_call_gives_its_slot_on(app, published):
    from celery.signals import task_revoked

    task = app.tasks[CONCURRENCY]
    holder = request_for(task)
    held = limits_enter(task, holder, ("acme",), {})
    requests = [request_for(task) for _ in range(2)]
    for request in requests:
        with pytest.raises(LimitDeferred):
            limits_enter(task, request, ("acme",), {})
    limits_exit(task, holder, held)
    assert ConcurrencySlot.objects.get().task_id == requests[0].id
    # Cancelled while parked: its woken message is skipped as revoked.
    task_revoked.send(sender=task, request=requests[0], terminated=False, signum=None,
                      expired=False)
    assert ConcurrencySlot.objects.get().task_id == requests[1].id
    assert [s.options["task_id"] for s in published] == [r.id for r in requests]
    assert list(LimitWaiter.objects.values_list("task_id", flat=True)) == [requests[1].id]


def test_through_the_tracer_a_deferred_call_is_neither_failure_nor_retry(app, published):
    from celery import signals

    task = app.tasks[CONCURRENCY]
    seen = []
    receivers = {signals.task_failure: "failure", signals.task_retry: "retry",
                 signals.task_success: "success"}
    handlers = {}
    for signal, name in receivers.items():
        handlers[signal] = (lambda name: lambda **kw: seen.append(name))(name)
        signal.connect(handlers[signal], weak=False)
    try:
        trace = build_tracer(task.name, task, app=app, eager=False)
        holder = request_for(task)
        held = limits_enter(task, holder, ("acme",), {})
        task_id = str(uuid.uuid4())
        request = {"id": task_id, "delivery_info": {"exchange": "", "routing_key": "main_worker"},
                   "is_eager": False, "hostname": "test"}
        retval, info = trace(task_id, ["acme"], {}, request)[:2]
        assert info is not None and info.state == "IGNORED"
        assert isinstance(info.retval, LimitDeferred)
        assert seen == []
        assert published == []  # parked
        limits_exit(task, holder, held)
        # The slot is handed to it: its message runs and releases it.
        [again] = published
        request[GRANT_HEADER] = again.options["headers"][GRANT_HEADER]
        retval, info = trace(task_id, ["acme"], {}, request)[:2]
        assert info is None and seen == ["success"]
        assert not ConcurrencySlot.objects.exists()
    finally:
        for signal, handler in handlers.items():
            signal.disconnect(handler)


def test_a_failing_run_gives_its_slot_back(app, published):
    task = app.tasks[CONCURRENCY]
    trace = build_tracer(task.name, task, app=app, eager=False)
    request = {"id": "x", "delivery_info": {}, "is_eager": False, "hostname": "test"}
    # ms="boom": time.sleep raises TypeError inside the body.
    retval, info = trace("x", ["acme"], {"ms": "boom"}, request)[:2]
    assert info is not None and info.state == "FAILURE"
    assert not ConcurrencySlot.objects.exists()
    assert LimitKey.objects.filter(key="acme").exists()


def test_a_run_killed_at_its_hard_time_limit_hands_its_slot_on(app, published):
    """On prefork the killed process never reaches limits_exit: Celery's main
    process sends task_failure(TimeLimitExceeded) and the slot goes on then,
    not when its lease ends."""
    from celery.exceptions import TimeLimitExceeded
    from celery.signals import task_failure

    task = app.tasks[CONCURRENCY]
    holder = request_for(task)
    limits_enter(task, holder, ("acme",), {})
    waiting = request_for(task)
    with pytest.raises(LimitDeferred):
        limits_enter(task, waiting, ("acme",), {})
    task_failure.send(sender=task, task_id=holder.id, exception=TimeLimitExceeded(5),
                      args=["acme"], kwargs={}, traceback=None, einfo=None)
    assert ConcurrencySlot.objects.get().task_id == waiting.id
    assert [s.options["task_id"] for s in published] == [waiting.id]
