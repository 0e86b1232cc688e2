"""Cancelled timer entries leave the worker's event-loop timer (queueworks/core/timer_compaction.py)."""

from __future__ import annotations

from functools import partial
import json
import time
import uuid

import pytest
from kombu.asynchronous import Hub
from kombu.asynchronous.timer import Timer

from queueworks.core import timer_compaction
from queueworks.core.timer_compaction import CompactionStats, compact_cancelled, compact_if_due
from tests.support import rabbit
from tests.support.live import wait_for


def _fill(timer, *, live: int, cancelled: int, fired: list):
    """``live`` entries due in 1..live s and ``cancelled`` cancelled ones in between."""
    now = time.monotonic()
    kept = [timer.call_at(now + 1 + i, fired.append, (i,)) for i in range(live)]
    for i in range(cancelled):
        timer.call_at(now + 0.5 + i % (live + 1), fired.append, (f"cancelled-{i}",)).cancel()
    return kept


def test_compaction_drops_cancelled_entries_and_keeps_the_live_ones_in_order():
    timer, fired = Timer(), []
    kept = _fill(timer, live=5, cancelled=1000, fired=fired)
    before = [(event.eta, event.priority, event.entry) for event in timer.queue
              if not event.entry.cancelled]

    assert compact_cancelled(timer) == 1000

    assert len(timer) == 5
    assert [(event.eta, event.priority, event.entry) for event in timer.queue] == before
    assert [event.entry for event in timer.queue] == kept


def test_compaction_waits_for_the_floor_then_for_twice_what_it_kept():
    timer, fired, stats = Timer(), [], CompactionStats()
    _fill(timer, live=10, cancelled=80, fired=fired)
    assert compact_if_due(timer, stats, floor=100) == 0 and len(timer) == 90
    _fill(timer, live=0, cancelled=20, fired=fired)
    assert compact_if_due(timer, stats, floor=100) == 100
    assert (stats.compactions, stats.dropped, stats.kept, len(timer)) == (1, 100, 10, 10)
    # Kept 10: the next compaction waits for the floor again (100 > 2 x 10).
    _fill(timer, live=0, cancelled=50, fired=fired)
    assert compact_if_due(timer, stats, floor=100) == 0 and len(timer) == 60
    # Many live entries: it waits for twice as many as it kept.
    timer2, stats2 = Timer(), CompactionStats()
    _fill(timer2, live=150, cancelled=0, fired=fired)
    assert compact_if_due(timer2, stats2, floor=100) == 0 and stats2.kept == 150
    _fill(timer2, live=0, cancelled=149, fired=fired)
    assert compact_if_due(timer2, stats2, floor=100) == 0
    _fill(timer2, live=0, cancelled=1, fired=fired)
    assert compact_if_due(timer2, stats2, floor=100) == 150 and len(timer2) == 150


def test_inside_a_running_event_loop_live_entries_fire_once_and_cancelled_ones_never():
    """The compaction runs as one of the hub's own timers, as in the worker."""
    hub, fired, stats = Hub(), [], CompactionStats()
    now = time.monotonic()
    for i in range(20):
        hub.timer.call_at(now + 0.01 * i, fired.append, (i,))
        for j in range(30):
            hub.timer.call_at(now + 0.01 * i + 0.001 * j, fired.append,
                              (f"cancelled-{i}-{j}",)).cancel()
    hub.call_repeatedly(0.02, partial(compact_if_due, floor=50), hub.timer, stats)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and len(fired) < 20:
        hub.fire_timers(max_timers=5)
        time.sleep(0.002)
    hub.close()
    assert fired == list(range(20))
    assert stats.compactions >= 1 and stats.dropped >= 50, stats


def test_floor_argument_is_the_module_floor_by_default():
    timer, fired = Timer(), []
    _fill(timer, live=1, cancelled=timer_compaction.FLOOR - 2, fired=fired)
    assert compact_if_due(timer, CompactionStats()) == 0


# -- through the real main_worker --------------------------------------------------------

MAIN_TASKS = timer_compaction.FLOOR + 2000


def _publish_noops(count: int) -> None:
    """``count`` noop messages to main_worker's queue over one connection."""
    from kombu import Connection

    from projectname.celery import app

    queue = app.amqp.queues["main_worker"]
    with Connection(app.conf.broker_url) as connection:
        producer = connection.Producer()
        for n in range(count):
            message = app.amqp.as_task_v2(str(uuid.uuid4()), "apps.testing.tasks.noop",
                                          kwargs={"n": n})
            producer.publish(json.dumps(message.body).encode(), exchange="",
                             routing_key=queue.name, headers=message.headers,
                             content_type="application/json", content_encoding="utf-8",
                             delivery_mode=2, declare=[queue])


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_main_worker_drops_cancelled_time_limit_timers_and_still_enforces_its_limits(
        live_system):
    """More tasks than the floor through main_worker (60/90 s limits): the
    cancelled entries are dropped within seconds, not after 60 s, and a task
    whose soft limit was pending through the compactions is still stopped at
    it."""
    from celery.result import AsyncResult

    from apps.testing.tasks import fault_sleep

    node = live_system.node("main_worker")

    def entries():
        replies = live_system.inspect("timer_entries", timeout=5.0)
        return replies.get(node)

    first = wait_for(entries, 60, interval=1, message=f"timer_entries from {node}")
    # Sleeps 60 s unless stopped: its soft limit (20 s) is a live entry in the
    # timer while the noops' cancelled entries are dropped around it.
    sleeper = fault_sleep.apply_async((uuid.uuid4().hex, "soft-through-compaction", 60.0),
                                      soft_time_limit=20, time_limit=40)
    sent = time.monotonic()
    _publish_noops(MAIN_TASKS)
    wait_for(lambda: rabbit.queue_info(live_system.vhost, "main_worker").get("messages") == 0,
             180, interval=0.5, message="main_worker drained the noops")

    after = wait_for(lambda: (lambda reply: reply if reply and reply["compactions"]
                              > first["compactions"] else None)(entries()),
                     30, interval=1, message="a compaction after the noops")
    # Without the step every one of them would stay for 60 s (their soft limit).
    assert after["dropped"] - first["dropped"] >= timer_compaction.FLOOR - 50, after
    assert after["entries"] < MAIN_TASKS, after

    result = AsyncResult(sleeper.id)
    wait_for(lambda: result.state == "FAILURE", 90, interval=0.5,
             message="the sleeper stopped at its soft limit")
    stopped = time.monotonic() - sent
    assert "SoftTimeLimitReached" in repr(result.result) or \
        "soft time limit" in str(result.result), result.result
    assert stopped >= 19, f"stopped after {stopped:.1f} s, before its 20 s soft limit"
