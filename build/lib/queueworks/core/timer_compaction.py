"""Cancelled timer entries leave the worker's event-loop timer as they pile up.

A prefork worker's main process schedules, for every task it hands to a pool
process, a timer entry for the task's soft (or hard) time limit.  When the
task finishes first, Celery cancels the entry, but kombu's timer is a heap:
a cancelled entry stays in it, holding memory, until it would have been due.
``main_worker`` (60 s soft, 90 s hard) thus held about 90 s of tasks' worth
of dead entries at its peak rate: its main process grew about 0.5 MiB per
1,000 tasks over the first 100,000 (docs/performance-main-lane.md).

This worker bootstep checks the timer once a second and, once it holds at
least ``FLOOR`` entries and twice what the last compaction left, rebuilds it
from its live entries alone.  Everything goes through kombu's public Timer
API (``len``, the sorted ``queue`` snapshot, ``clear``, ``enter_at``) on the
event loop's own thread, between two timer callbacks, so no entry that may
still fire is lost or moved: each keeps its due time and priority.  The cost
is amortised: a compaction touches at most as many entries as were added
since the one before.  ``celery inspect timer_entries`` reports the timer's
size and what the step has dropped.  ``WORKER_TIMER_COMPACTION=off`` in a
worker's environment leaves the timer as stock Celery does (the benchmark's
comparison: bench/main_lane.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from celery import bootsteps
from celery.worker import control

logger = logging.getLogger(__name__)

# Below this many entries (about 2 MiB) the timer is left alone.
FLOOR = 4096
CHECK_SECONDS = 1.0
SWITCH = "WORKER_TIMER_COMPACTION"


def switched_off() -> bool:
    return os.environ.get(SWITCH, "").strip().lower() in ("0", "off", "false", "no")


@dataclass
class CompactionStats:
    compactions: int = 0
    dropped: int = 0
    # Entries the last compaction kept: the next one waits for twice as many.
    kept: int = 0


STATS = CompactionStats()


def compact_cancelled(timer) -> int:
    """Rebuild a kombu timer from its live entries; returns how many were dropped."""
    events = timer.queue  # sorted by due time: re-entering keeps it a valid heap
    live = [event for event in events if not event.entry.cancelled]
    timer.clear()
    for event in live:
        timer.enter_at(event.entry, event.eta, event.priority)
    return len(events) - len(live)


def compact_if_due(timer, stats: CompactionStats = STATS, *, floor: int = FLOOR) -> int:
    """Compact once the timer holds ``floor`` entries and twice the last kept."""
    if len(timer) < max(floor, 2 * stats.kept):
        return 0
    dropped = compact_cancelled(timer)
    stats.compactions += 1
    stats.dropped += dropped
    stats.kept = len(timer)
    logger.debug("Timer compacted: %d cancelled entries dropped, %d kept.", dropped, stats.kept)
    return dropped


class TimerCompaction(bootsteps.StartStopStep):
    """Worker step: the check on the worker's event-loop timer."""

    requires = ("celery.worker.components:Hub",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.tref = None

    def start(self, worker):
        hub = getattr(worker, "hub", None)
        if hub is None:  # no event loop (e.g. a worker on a transport without one)
            return
        if switched_off():
            logger.info("%s=off: cancelled timer entries stay until due.", SWITCH)
            return
        self.tref = hub.call_repeatedly(CHECK_SECONDS, compact_if_due, hub.timer)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


@control.inspect_command(name="timer_entries")
def timer_entries(state, **kwargs):
    """The event-loop timer's size and the cancelled entries dropped from it."""
    hub = getattr(state.consumer, "hub", None)
    return {"entries": len(hub.timer) if hub is not None else 0,
            "compactions": STATS.compactions, "dropped": STATS.dropped}
