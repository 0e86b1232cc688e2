"""queueworks/dispatch/lean.py pieces that can be checked without a worker (the
lean path itself runs in tests/queueworks/dispatch/test_bulk_lane.py and
test_lean_live.py, live)."""

import pytest

from queueworks.dispatch import lean


class _Message:
    def __init__(self, body: bytes, content_encoding: str):
        self.body, self.content_type, self.content_encoding = (
            body, "application/json", content_encoding)


@pytest.mark.parametrize("encoding", ["utf-8", "binary", "latin-1", None])
def test_bodies_decode_exactly_as_on_celerys_path(encoding):
    """Celery's path decodes with kombu, whose JSON codec reads UTF-8 whatever
    the content_encoding label says; the lean path must agree."""
    from types import SimpleNamespace

    from kombu.serialization import loads, prepare_accept_content

    from projectname.celery import app

    body = '[[], {"token": "é€ü"}, {"callbacks": null}]'.encode("utf-8")
    runner = lean.LeanRunner(SimpleNamespace(app=app, pool=None, hostname="h",
                                             disable_rate_limits=True))
    expected = loads(body, "application/json", encoding,
                     accept=prepare_accept_content(app.conf.accept_content))
    assert runner.decode_body(_Message(body, encoding)) == expected


class _Channel:
    is_open = True

    def basic_ack(self, *args, **kwargs):
        pass

    def basic_reject(self, *args, **kwargs):
        pass


class _Delivery:
    content_type = "application/json"
    delivery_info = {"redelivered": False}

    def __init__(self, channel):
        self.channel = channel


def _runner(events):
    from types import SimpleNamespace

    import apps.testing.tasks  # noqa: F401 - registers the task, as a worker does
    from projectname.celery import app

    consumer = SimpleNamespace(app=app, pool=None, hostname="h", disable_rate_limits=True,
                               event_dispatcher=events)
    runner = lean.LeanRunner(consumer)
    channel = _Channel()
    runner.attach(channel, prefetch_count=8)
    return runner, consumer, _Delivery(channel)


NOOP_HEADERS = {"task": "apps.testing.tasks.noop", "id": "a-plain-id"}


def _noop():
    import apps.testing.tasks  # noqa: F401 - registers the task, as a worker does
    from projectname.celery import app

    return app.tasks[NOOP_HEADERS["task"]]


def test_task_events_switched_at_runtime_decide_for_each_message():
    from types import SimpleNamespace

    events = SimpleNamespace(enabled=True, groups={"worker"})  # no task events at start
    runner, consumer, message = _runner(events)
    noop = _noop()
    assert runner.eligible(message, NOOP_HEADERS, noop) is True
    events.groups.add("task")  # enable_events (Flower, celery control)
    assert runner.eligible(message, NOOP_HEADERS, noop) is False
    events.groups.discard("task")  # disable_events
    assert runner.eligible(message, NOOP_HEADERS, noop) is True


def test_stamped_messages_go_to_celerys_path_while_a_stamp_is_revoked():
    from celery.worker import state

    runner, consumer, message = _runner(None)
    noop = _noop()
    stamped = {**NOOP_HEADERS, "stamped_headers": ["batch"], "stamps": {"batch": "b1"}}
    assert runner.eligible(message, stamped, noop) is True
    state.revoked_stamps["batch"] = ["b1"]
    try:
        assert runner.eligible(message, stamped, noop) is False
        assert runner.eligible(message, NOOP_HEADERS, noop) is True  # no stamps: unaffected
    finally:
        state.revoked_stamps.clear()


@pytest.mark.parametrize("off, lean_on, batch", [
    ("", True, 32),
    ("coalesced_acks", True, 1),
    ("lean_path", False, None),
])
def test_lean_steps_start_what_is_not_switched_off(monkeypatch, off, lean_on, batch):
    from types import SimpleNamespace

    import apps.testing.tasks  # noqa: F401 - registers the task, as a worker does
    from projectname.celery import app

    monkeypatch.setenv("DISPATCH_FAST_PATHS_OFF", off)
    channel = _Channel()
    timer = SimpleNamespace(call_repeatedly=lambda seconds, function: SimpleNamespace(
        cancel=lambda: None))
    consumer = SimpleNamespace(
        app=app, pool=SimpleNamespace(runs_inline=True), hostname="h",
        disable_rate_limits=True, event_dispatcher=None, qos=SimpleNamespace(value=128),
        task_consumer=SimpleNamespace(channel=channel), timer=timer)
    step = lean.LeanSteps(consumer)
    step.start(consumer)
    assert (consumer.lean is not None) is lean_on
    if lean_on:
        assert consumer.lean.coalescer.batch == batch
    step.stop(consumer)


# -- lean_strategy: the project's Task.Strategy ----------------------------------------

class _StockHandler:
    """Stands for the handler Celery's default strategy builds; records calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, message, body, ack, reject, callbacks):
        self.calls.append(message)


def _strategy_consumer(monkeypatch, *, runs_inline: bool):
    from types import SimpleNamespace

    import celery.worker.strategy

    from projectname.celery import app

    stock = _StockHandler()
    monkeypatch.setattr(celery.worker.strategy, "default", lambda task, app, consumer: stock)
    poisoned = []
    consumer = SimpleNamespace(
        app=app, pool=SimpleNamespace(runs_inline=runs_inline), hostname="h",
        disable_rate_limits=True, event_dispatcher=None, lean=None,
        on_decode_error=lambda message, exc: poisoned.append(message))
    return consumer, stock, poisoned


def test_the_projects_tasks_name_the_lean_strategy():
    import apps.testing.tasks  # noqa: F401 - registers the task, as a worker does
    from projectname.celery import app

    assert app.Task.Strategy == "queueworks.dispatch.lean:lean_strategy"
    assert _noop().Strategy == "queueworks.dispatch.lean:lean_strategy"


@pytest.mark.parametrize("case", ["prefork", "switched-off", "other-celery", "no-lean-step"])
def test_a_worker_without_the_lean_path_gets_celerys_stock_handler_object(monkeypatch, case):
    """Zero cost off the bulk lane: the handler is the very object Celery's
    default strategy built, not a wrapper around it."""
    consumer, stock, _ = _strategy_consumer(monkeypatch, runs_inline=case != "prefork")
    if case == "switched-off":
        monkeypatch.setenv("DISPATCH_FAST_PATHS_OFF", "lean_path")
    elif case == "other-celery":
        monkeypatch.setattr(lean.compat_celery, "SUPPORTED", False)
    elif case == "no-lean-step":
        del consumer.lean
    assert lean.lean_strategy(_noop(), consumer.app, consumer) is stock


class _Delivered:
    content_type = "application/json"
    content_encoding = "utf-8"

    def __init__(self, channel, tag, body=b'[[], {}, {}]', **headers):
        self.channel, self.delivery_tag, self.body = channel, tag, body
        self.headers = {**NOOP_HEADERS, "id": f"id-{tag}", **headers}
        self.delivery_info = {"redelivered": False}


def test_the_strategy_runs_plain_messages_inline_and_hands_the_rest_to_celery(monkeypatch):
    consumer, stock, poisoned = _strategy_consumer(monkeypatch, runs_inline=True)
    monkeypatch.delenv("DISPATCH_FAST_PATHS_OFF", raising=False)
    handler = lean.lean_strategy(_noop(), consumer.app, consumer)
    assert handler is not stock and handler.checks_bodies is True

    def new_runner():
        runner = lean.LeanRunner(consumer)
        channel = _Channel()
        runner.attach(channel, prefetch_count=64)
        ran = []
        runner.run = lambda message, headers, task, on_poison: ran.append(message)
        return runner, channel, ran

    runner, channel, ran = new_runner()
    consumer.lean = runner
    plain = _Delivered(channel, 1)
    handler(plain, None, None, None, None)
    assert ran == [plain] and stock.calls == []
    runner.coalescer.finished(1)  # a finished lean task waits in the batch
    acks = []
    runner.coalescer._ack = lambda tag, multiple: acks.append((tag, multiple))
    eta = _Delivered(channel, 2, eta="2030-01-01T00:00:00+00:00")
    handler(eta, None, None, None, None)
    assert stock.calls == [eta], "an ETA message takes Celery's handler"
    assert acks == [(1, True)], "the batch is acknowledged before Celery's path"
    assert runner.coalescer.foreign == {2}
    poison = _Delivered(channel, 3, body=b"not json", retries=1)
    handler(poison, None, None, None, None)
    assert poisoned == [poison] and stock.calls == [eta]
    # A reconnection: a new runner on a new channel, the same handler.
    runner2, channel2, ran2 = new_runner()
    consumer.lean = runner2
    again = _Delivered(channel2, 1)
    handler(again, None, None, None, None)
    assert ran2 == [again] and ran == [plain]
    # No runner (the consumer between two starts): Celery's handler.
    consumer.lean = None
    handler(_Delivered(channel2, 2), None, None, None, None)
    assert len(stock.calls) == 2 and ran2 == [again]


def test_with_celerys_real_default_strategy_a_prefork_consumer_gets_its_handler(monkeypatch):
    """The same, unpatched: the handler is the closure Celery's default
    strategy returns; on a solo pool, the lean strategy's own."""
    from types import SimpleNamespace

    monkeypatch.delenv("DISPATCH_FAST_PATHS_OFF", raising=False)

    from projectname.celery import app

    nothing = lambda *args, **kwargs: None  # noqa: E731
    consumer = SimpleNamespace(
        app=app, pool=SimpleNamespace(runs_inline=False, apply_async=nothing), hostname="h",
        lean=None, on_decode_error=nothing,
        connection_errors=(), event_dispatcher=None, timer=SimpleNamespace(call_at=nothing),
        apply_eta_task=nothing, disable_rate_limits=True, task_buckets={},
        on_task_request=nothing, _limit_task=nothing, _limit_post_eta=nothing,
        controller=SimpleNamespace(state=SimpleNamespace(revoked=set())))
    handler = lean.lean_strategy(_noop(), app, consumer)
    assert handler.__qualname__ == "default.<locals>.task_message_handler"
    assert handler.__module__ == "celery.worker.strategy"
    consumer.pool.runs_inline = True
    wrapped = lean.lean_strategy(_noop(), app, consumer)
    assert wrapped.__qualname__ == "lean_strategy.<locals>.lean_task_handler"
