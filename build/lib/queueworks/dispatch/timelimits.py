"""Soft and hard time limits for tasks that run in the worker's own process.

Celery enforces time limits only in the prefork pool, where the parent can
kill a child.  The solo pool (queueworks/dispatch/pool.py) runs tasks in the worker
process itself, so here:

* the **soft limit** raises ``SoftTimeLimitExceeded`` inside the task (a
  ``SIGALRM`` timer, as prefork does it in the child);
* the **hard limit** raises ``TimeLimitExceeded`` inside the task: the task
  fails with that error and its message is acknowledged, as with prefork;
* a task that survives its hard limit by ``GRACE_SECONDS`` (it swallowed the
  exception, or it is stuck in C code that never returns to the interpreter)
  gets its process ended by a watchdog thread (exit code 70).  Supervisor
  starts the worker again; the message was not acknowledged, so RabbitMQ
  hands it out again and the delivery limit (queueworks/reliability) dead-letters
  it if it keeps doing that.

Only the main thread may receive signals, which is where the solo pool runs
tasks.  Arming and disarming the timer is two system calls per task.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

logger = logging.getLogger(__name__)

GRACE_SECONDS = 5.0
EXIT_HARD_LIMIT = 70


class TimeLimiter:
    """Runs callables under a (soft, hard) limit; one task at a time."""

    def __init__(self, *, grace: float = GRACE_SECONDS):
        self.grace = grace
        self._soft: float | None = None
        self._hard: float | None = None
        self._started = 0.0
        self._pending_hard = False
        self._kill_at: float | None = None
        self._installed = False
        # True only while a task runs under a limit.  One attribute, set last
        # and cleared first: a signal handler runs between any two bytecodes
        # and must never see half-cleared deadlines.
        self._armed = False
        self._watchdog: threading.Thread | None = None

    def _install(self) -> None:
        signal.signal(signal.SIGALRM, self._on_alarm)
        self._watchdog = threading.Thread(target=self._watch, name="time-limit-watchdog",
                                          daemon=True)
        self._watchdog.start()
        self._installed = True

    def run(self, function, soft: float | None, hard: float | None):
        """``function()`` under the limits (seconds; None or 0: no limit)."""
        soft = soft or None
        hard = hard or None
        if soft is None and hard is None:
            return function()
        if not self._installed:
            self._install()
        if soft is not None and hard is not None and soft >= hard:
            soft = None
        self._soft, self._hard = soft, hard
        self._started = time.monotonic()
        self._pending_hard = soft is None
        if hard is not None:
            self._kill_at = self._started + hard + self.grace
        self._armed = True
        signal.setitimer(signal.ITIMER_REAL, soft if soft is not None else hard)
        try:
            return function()
        finally:
            # Disarmed before the timer is stopped: an alarm delivered in
            # between (the timer fired as the task ended) finds nothing to do.
            self._armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._soft = self._hard = self._kill_at = None

    def _on_alarm(self, signum, frame) -> None:
        if not self._armed:
            return  # the task ended just as the timer fired
        if not self._pending_hard:
            self._pending_hard = True
            if self._hard is not None:
                signal.setitimer(signal.ITIMER_REAL,
                                 max(0.001, self._hard - (time.monotonic() - self._started)))
            raise SoftTimeLimitExceeded(self._soft)
        self._armed = False
        raise TimeLimitExceeded(self._hard)

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            kill_at = self._kill_at
            if kill_at is not None and time.monotonic() > kill_at:
                logger.critical(
                    "A task is still running %.0f s after its hard time limit; ending the "
                    "worker process (supervisor restarts it, the message is redelivered).",
                    self.grace)
                logging.shutdown()
                os._exit(EXIT_HARD_LIMIT)
