"""Contract tests: the Celery internals queueworks/dispatch/compat/celery.py exports.

Each test pins one private name the bulk lane uses; an upgrade that changes
it fails here, by name, before a worker misbehaves."""

from __future__ import annotations

import inspect

import pytest
from celery import Celery
from celery.contrib.testing.mocks import TaskMessage

from queueworks.dispatch.compat import celery as compat


@pytest.fixture
def app():
    app = Celery("contract", set_as_current=False)
    app.conf.update(task_always_eager=False, result_backend="cache+memory://")
    return app


def test_worker_state_has_the_revoke_lists_and_counters_the_lean_path_reads():
    state = compat.worker_state
    state.revoked.add("contract-id")
    assert "contract-id" in state.revoked
    state.revoked.discard("contract-id")
    assert isinstance(state.revoked_stamps, dict)
    assert state.total_count["contract.task"] == 0  # a Counter
    assert isinstance(state.all_total_count, list) and isinstance(state.all_total_count[0], int)
    assert hasattr(state, "should_stop")


@pytest.mark.django_db
def test_revoke_by_stamped_headers_fills_revoked_stamps_which_celerys_request_honours(app):
    from celery.worker.control import revoke_by_stamped_headers

    state = compat.worker_state
    try:
        # The control command the lean path must notice: it fills
        # ``revoked_stamps``, and Celery's Request decides from it.
        revoke_by_stamped_headers(None, {"batch": "b1"})
        assert state.revoked_stamps == {"batch": ["b1"]}

        @app.task(name="contract.stamped")
        def stamped():
            return None

        message = TaskMessage("contract.stamped", id="stamped-id", stamped_headers=["batch"],
                              stamps={"batch": "b1"})
        request = compat.Request(message, app=app, task=stamped, on_ack=lambda *a, **k: None)
        assert request.stamped_headers == ["batch"]
        assert request.revoked() is True
    finally:
        state.revoked_stamps.clear()


def test_request_and_request_class_take_the_arguments_the_lean_path_passes(app):
    parameters = inspect.signature(compat.Request.__init__).parameters
    for name in ("message", "on_ack", "app", "on_reject", "hostname", "eventer", "task",
                 "connection_errors", "utc"):
        assert name in parameters, name
    inspect.signature(compat.create_request_cls).bind(
        compat.Request, object(), object(), "host", None, app=app)
    assert list(inspect.signature(compat.Request.on_success).parameters)[:2] == [
        "self", "failed__retval__runtime"]


class _Pool:
    def apply_async(self, *args, **kwargs):
        raise AssertionError("the lean path never applies through the pool")


@pytest.mark.django_db
def test_a_request_given_a_failed_trace_result_settles_as_a_failure(app):
    from queueworks.dispatch.compat.billiard import ExceptionInfo

    @app.task(name="contract.fails", acks_late=True)
    def fails():
        raise ValueError("x")

    acked, rejected = [], []
    message = TaskMessage("contract.fails", id="failing-id")
    request_cls = compat.create_request_cls(compat.Request, fails, _Pool(), "host", None, app=app)
    request = request_cls(message, app=app, task=fails, hostname="host",
                          on_ack=lambda *a, **k: acked.append(1),
                          on_reject=lambda *a, **k: rejected.append(1),
                          connection_errors=(), utc=True, eventer=None)
    try:
        raise ValueError("boom")
    except ValueError:
        info = ExceptionInfo()
    request.on_success((1, info, 0.0))
    assert acked == [1] and rejected == []  # acks_late: a failure is acknowledged


@pytest.mark.django_db
def test_the_tracer_is_the_tasks___trace___and_returns_retval_info_runtime(app):
    from celery.app.trace import build_tracer

    @app.task(name="contract.adds")
    def adds(a, b):
        return a + b

    adds.__trace__ = build_tracer(adds.name, adds, app=app, store_errors=False)
    try:
        retval, info, runtime, _ = compat.tracer(adds)("trace-id", (1, 2), {}, {})
    finally:
        adds.__trace__ = None
    assert (retval, info) == (3, None) and runtime >= 0


def test_the_events_step_opens_its_connection_with_the_consumers_connection_for_write():
    """queueworks/dispatch/worker.py turns confirms off for the event dispatcher by
    overriding ``Consumer.connection_for_write``; Celery's Events step must be
    what calls it (and nothing else in the consumer's steps)."""
    from celery.worker.consumer.events import Events

    assert "c.connection_for_write(" in inspect.getsource(Events.start)
    callers = [module for module in ("connection", "consumer", "control", "gossip", "heart",
                                     "mingle", "tasks", "agent", "delayed_delivery")
               if "c.connection_for_write(" in inspect.getsource(
                   __import__(f"celery.worker.consumer.{module}", fromlist=["x"]))]
    assert callers == [], callers


def test_a_pool_reports_its_info_through__get_info():
    """compat.celery.pool_info adds a pool's own entries to ``celery inspect stats`` there."""
    from celery.concurrency.base import BasePool, apply_target
    from celery.concurrency.solo import TaskPool

    assert "self._get_info()" in inspect.getsource(BasePool.info.fget)
    assert isinstance(TaskPool(limit=1)._get_info(), dict)
    assert list(inspect.signature(apply_target).parameters)[:3] == ["target", "args", "kwargs"]


def test_the_bulk_pool_adds_its_limits_to_celerys_info():
    from celery.concurrency.solo import TaskPool

    from queueworks.dispatch.pool import SoloPool

    info = SoloPool(limit=1, timeout=30, soft_timeout=20, max_memory_per_child=1000).info
    assert info["timeouts"] == (20, 30) and info["max-memory-per-child"] == 1000
    # Celery's own entries stay (its solo pool reports no timeouts of its own).
    stock = TaskPool(limit=1).info
    assert stock["timeouts"] == ()
    assert {key: info[key] for key in stock if key not in ("timeouts", "implementation")} == {
        key: value for key, value in stock.items() if key not in ("timeouts", "implementation")}


def test_strategies_are_built_at_each_task_consumer_start_and_called_as_the_lean_path_expects():
    """queueworks/dispatch/lean.py ``lean_strategy`` (public ``Task.Strategy``)
    relies on three things Celery does: the task consumer's start builds every
    task's strategy (so a reconnection rebuilds them, before ``LeanSteps``
    starts again, which is why the runner is looked up per message); the
    consumer calls a handler as ``(message, payload, ack, reject, callbacks)``,
    ``payload`` None for protocol 2; and the base ``Task.Strategy`` names the
    default strategy whose handler the lean strategy falls back to."""
    import re

    from celery import Task
    from celery.worker.consumer.consumer import Consumer
    from celery.worker.consumer.tasks import Tasks

    assert Task.Strategy == "celery.worker.strategy:default"
    assert "c.update_strategies()" in inspect.getsource(Tasks.start)
    assert "task.start_strategy(self.app, self)" in inspect.getsource(Consumer.update_strategies)
    handler_call = inspect.getsource(Consumer.create_task_handler)
    assert "payload = None" in handler_call
    assert re.search(r"strategy\(\s*message, payload,\s*ack_log_error_promise,"
                     r"\s*reject_log_error_promise,\s*callbacks,\s*\)", handler_call)
    assert re.search(r"except DecodeError as exc:\s*return self\.on_decode_error", handler_call)


def test_a_backends_store_result_hands_each_state_to_its_store_result_hook():
    """queueworks/core/results_backend.py overrides the hook every result backend
    implements: ``store_result`` passes ``(task_id, result, state, traceback)``
    by position and ``request`` by name to ``self._store_result``."""
    from celery import Celery
    from celery.backends.base import BaseBackend

    calls = []

    class Recording(BaseBackend):
        def _store_result(self, *args, **kwargs):
            calls.append((args, kwargs))

    backend = Recording(app=Celery(set_as_current=False))
    backend.store_result("an-id", 42, "SUCCESS", traceback="tb", request="req")
    ((args, kwargs),) = calls
    assert args[:4] == ("an-id", backend.encode_result(42, "SUCCESS"), "SUCCESS", "tb")
    assert kwargs.get("request") == "req"
