"""A task over its limit is published again, delayed, and ends without
holding its process, without a failure or retry; within it, it runs and
gives its slot back whatever the outcome."""

from __future__ import annotations

import time
import uuid

import pytest
from celery.app.trace import build_tracer
from celery.canvas import Signature

from queueworks.limits.enforcement import SINCE_HEADER, LimitDeferred, limits_enter, limits_exit
from queueworks.limits.models import ConcurrencySlot, LimitKey, LimitTally, LimitWaiter
from queueworks.limits.rules import task_limits

pytestmark = pytest.mark.django_db(transaction=True)
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


def test_over_the_limit_the_call_is_published_again_with_a_delay(app, published):
    task = app.tasks[CONCURRENCY]
    first = request_for(task)
    limits_enter(task, first, ("acme",), {})
    second = request_for(task, taskapi_recorded=1, **{"x-death": [{"count": 1}]})
    with pytest.raises(LimitDeferred):
        limits_enter(task, second, ("acme",), {"ms": 5})
    [again] = published
    assert again.options["task_id"] == second.id
    assert 0 < again.options["countdown"] <= 1.5
    assert again.options["headers"][SINCE_HEADER] <= time.time()
    assert again.options["headers"]["taskapi_recorded"] == 1  # still cancellable
    assert "x-death" not in again.options["headers"]
    assert not again.options.get("retries")                  # not a retry
    assert (list(again.args), again.kwargs) == (["acme"], {"ms": 5})
    waiter = LimitWaiter.objects.get()
    assert waiter.task_id == second.id and waiter.key == "acme"
    assert LimitTally.objects.get().refused == 1
    # Another key is not held up.
    assert limits_enter(task, request_for(task), ("other",), {})


def test_a_call_that_waited_counts_its_wait_and_leaves_the_waiting_list(app, published):
    task = app.tasks[CONCURRENCY]
    holder = request_for(task)
    held = limits_enter(task, holder, ("acme",), {})
    waiting = request_for(task)
    with pytest.raises(LimitDeferred):
        limits_enter(task, waiting, ("acme",), {})
    limits_exit(task, holder, held)
    since = published[0].options["headers"][SINCE_HEADER] - 2.0
    back = request_for(task, **{SINCE_HEADER: since})
    back.id = waiting.id
    assert limits_enter(task, back, ("acme",), {})
    assert not LimitWaiter.objects.exists()
    tally = LimitTally.objects.get()
    assert (tally.started, tally.refused) == (2, 1)
    assert tally.waited_seconds >= 2.0


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
        assert len(published) == 1
        limits_exit(task, holder, held)
        # With the slot free, the same call runs and releases it.
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
