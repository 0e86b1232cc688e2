"""apps/dispatch/lean.py pieces that can be checked without a worker (the
lean path itself runs in tests/apps/dispatch/test_bulk_lane.py and
test_lean_live.py, live)."""

import pytest

from apps.dispatch import lean


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


def test_task_events_switched_at_runtime_decide_for_each_message():
    from types import SimpleNamespace

    events = SimpleNamespace(enabled=True, groups={"worker"})  # no task events at start
    runner, consumer, message = _runner(events)
    assert runner.eligible(message, NOOP_HEADERS) is not None
    events.groups.add("task")  # enable_events (Flower, celery control)
    assert runner.eligible(message, NOOP_HEADERS) is None
    events.groups.discard("task")  # disable_events
    assert runner.eligible(message, NOOP_HEADERS) is not None


def test_stamped_messages_go_to_celerys_path_while_a_stamp_is_revoked():
    from celery.worker import state

    runner, consumer, message = _runner(None)
    stamped = {**NOOP_HEADERS, "stamped_headers": ["batch"], "stamps": {"batch": "b1"}}
    assert runner.eligible(message, stamped) is not None
    state.revoked_stamps["batch"] = ["b1"]
    try:
        assert runner.eligible(message, stamped) is None
        assert runner.eligible(message, NOOP_HEADERS) is not None  # no stamps: unaffected
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
