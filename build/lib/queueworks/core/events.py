"""Task events only while someone listens.

Task events (task-received/-started/-succeeded: three publishes per task from
the worker's main process) feed Flower.  Nobody else reads them: /ops/ and
the Task API read the database.  A worker whose topology entry has
``task_events=False`` and a ``task_events_lease`` starts without them; Flower
asks every worker to send them (Celery's ``enable_events`` control command,
every 5 seconds for as long as it runs), and the worker sends them until no
such request has come for ``task_events_lease`` seconds, then stops until the
next one.  Worker heartbeats are never affected (``celery inspect`` and
Flower's worker list keep working).  ``celery control enable_events`` from a
shell lasts one lease too.  A worker declared without task events and
without a lease (the bulk lane) declines the request.

The time of the last request is recorded by wrapping Celery's own
``enable_events`` command, registered again under its name through
``celery.worker.control.control_command`` (the documented way to add remote
control commands); the command's behaviour is Celery's.  Workers started with
task events on are left alone: their dispatcher has no event groups to trim.
"""

from __future__ import annotations

import logging
import time

from celery import bootsteps
from celery.worker import control

from queueworks.core.runtime import bounded_int_from_environment

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "WORKER_TASK_EVENTS_LEASE"
MAX_LEASE = 3600
TASK_GROUP = "task"

_celery_enable_events = control.Panel.data["enable_events"]
_last_request: dict[str, float | None] = {"at": None}


@control.control_command(name="enable_events")
def enable_events(state):
    """Tell worker(s) to send task-related events."""
    if declines_task_events(lease=lease_from_environment(),
                            declared=state.app.conf.worker_send_task_events):
        return {"ok": "task events stay off: this worker's program declares none"}
    _last_request["at"] = time.monotonic()
    return _celery_enable_events(state)


def declines_task_events(*, lease: int, declared: bool) -> bool:
    """A program declared without task events and without a lease (the bulk
    lane, whose fast path runs only without them) keeps them off whoever asks."""
    return not declared and not lease


def lease_from_environment() -> int:
    return bounded_int_from_environment(ENVIRONMENT_VARIABLE, maximum=MAX_LEASE,
                                        unit="whole seconds",
                                        otherwise="task events stay as started")


def lease_expired(groups: set, lease: float, now: float) -> bool:
    """Whether task events, turned on by a request, should go off now."""
    if not groups or TASK_GROUP not in groups:
        return False  # off already, or every group on from the start
    requested = _last_request["at"]
    return requested is None or now - requested > lease


class TaskEventsLease(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.lease = lease_from_environment()
        self.timer_entry = None

    def start(self, c):
        if not self.lease:
            return
        self.timer_entry = c.timer.call_repeatedly(max(1.0, self.lease / 4), self.expire, (c,))

    def expire(self, c):
        dispatcher = getattr(c, "event_dispatcher", None)
        if dispatcher is None or not lease_expired(dispatcher.groups, self.lease,
                                                   time.monotonic()):
            return
        dispatcher.groups.discard(TASK_GROUP)
        logger.info("No request for task events in %d s: task events off until the next one.",
                    self.lease)

    def stop(self, c):
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
