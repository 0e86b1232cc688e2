"""Counting task outcomes and runtimes in the worker processes that run them.

Every worker process (a prefork child, a solo or lean-path worker, the main
process for revokes, hard time limits and lost processes) adds to an
in-memory tally from Celery's signals and a
daemon thread writes it to the database every ``FLUSH_SECONDS``
(``services.task_tallies_add``), and once more when the process shuts down.

Both writes run on a thread of their own, with that thread's own database
connection, and hold off forks while they write
(``queueworks/core/fork_guard.py``: a pool process forked in the middle of an
SQLite write transaction could never write).  The exit's flush never uses the
connection of the thread that is exiting: a soft time limit or SIGTERM can
interrupt that thread's query and leave its connection busy (on PostgreSQL
"connection in transaction status ACTIVE"), which would lose the tally.
Why the database and not task events or prometheus_client's multiprocess
mode: see docs/metrics.md ("Where the counts come from").

One flush per second per process, not one write per task: the bulk lane runs
thousands of tasks a second.  For the same reason a successful run costs two
signal receivers (``task_prerun`` and ``task_postrun``, which carries the
final state) and one lock, nothing more.  What a killed process (SIGKILL,
OOM) had not flushed is lost: at most its last ``FLUSH_SECONDS`` of counts.

Only worker processes record (``worker_init`` turns it on): tasks run eagerly
in a web or test process are not worker runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone

from celery import signals
from django.db import DatabaseError, close_old_connections, connections

from queueworks.core.fork_guard import background_writes
from queueworks.metrics import names

SUCCESS_STATE = "SUCCESS"  # celery.states.SUCCESS, the state task_postrun reports
logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
# How long a process's exit waits for its last flush (a busy database).
EXIT_FLUSH_SECONDS = 10.0


class Recorder:
    def __init__(self):
        self.enabled = False
        self._lock = threading.Lock()
        # (task name, minute since the epoch, key) -> amount; minutes become
        # datetimes only when written.
        self._pending: dict[tuple[str, int, str], float] = defaultdict(float)
        self._started: dict[str, float] = {}
        self._flusher_started = False

    # -- counting ----------------------------------------------------------
    def add(self, task_name: str, key: str, amount: float = 1.0) -> None:
        minute = int(time.time() // 60)
        with self._lock:
            self._pending[(task_name, minute, key)] += amount
        if not self._flusher_started:
            self._start_flusher()

    def run_started(self, task_id: str) -> None:
        self._started[task_id] = time.monotonic()

    def run_finished(self, task_id: str, task_name: str, *, succeeded: bool) -> None:
        """The run's runtime, and its success (failures, retries and revokes
        have signals of their own, some sent by the worker's main process)."""
        started = self._started.pop(task_id, None)
        minute = int(time.time() // 60)
        with self._lock:
            pending = self._pending
            if started is not None:
                seconds = time.monotonic() - started
                pending[(task_name, minute, names.bucket_key(seconds))] += 1
                pending[(task_name, minute, names.RUNTIME_SUM)] += seconds
            if succeeded:
                pending[(task_name, minute, names.SUCCESS)] += 1
        if not self._flusher_started:
            self._start_flusher()

    # -- writing -----------------------------------------------------------
    def take(self) -> dict[tuple[str, datetime, str], float]:
        """What was counted since the last take, keyed by the minute's datetime (UTC)."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
        return {(task_name, datetime.fromtimestamp(minute * 60, tz=timezone.utc), key): amount
                for (task_name, minute, key), amount in pending.items()}

    def flush(self) -> bool:
        """Write what was counted; False when the database refused (kept for the next)."""
        pending = self.take()
        if not pending:
            return True
        from queueworks.metrics.services import task_tallies_add

        try:
            with background_writes():
                task_tallies_add(deltas=pending)
            return True
        except DatabaseError:
            # Kept for the next flush: a busy or restarting database loses nothing.
            logger.exception("metrics: could not write %d task tallies; retrying", len(pending))
            with self._lock:
                for (task_name, minute, key), amount in pending.items():
                    self._pending[(task_name, int(minute.timestamp() // 60), key)] += amount
            return False

    def flush_at_exit(self, timeout: float = EXIT_FLUSH_SECONDS) -> None:
        """The last flush of an exiting process, on a thread (and connection) of its own."""
        thread = threading.Thread(target=self._flush_until_written, args=(timeout,),
                                  name="metrics-exit-flush", daemon=True)
        thread.start()
        thread.join(timeout + 1.0)

    def _flush_until_written(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            while not self.flush() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            connections.close_all()  # this thread's connections only

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_started:
                return
            self._flusher_started = True
        threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must outlive any one error
                logger.exception("metrics: flush failed")
            finally:
                # This thread's own connection: dropped when the database closed
                # it or it is past CONN_MAX_AGE, as after a request.
                with background_writes():
                    close_old_connections()

    def forget_inherited(self) -> None:
        """In a freshly forked child: the parent's tally is the parent's to write."""
        self._lock = threading.Lock()
        self._pending = defaultdict(float)
        self._started = {}
        self._flusher_started = False  # threads do not survive a fork


RECORDER = Recorder()


def _name(sender, request=None) -> str:
    return getattr(sender, "name", None) or getattr(request, "name", None) or str(sender or "")


def on_worker_init(**kwargs):
    RECORDER.enabled = True


def on_prerun(sender=None, task_id=None, **kwargs):
    if RECORDER.enabled and task_id:
        RECORDER.run_started(task_id)


def on_postrun(sender=None, task_id=None, state=None, **kwargs):
    """One receiver for every finished run: Celery's signal dispatch costs
    microseconds per receiver, per task."""
    if not RECORDER.enabled or not task_id:
        return
    task_name = _name(sender)
    RECORDER.run_finished(task_id, task_name, succeeded=state == SUCCESS_STATE)
    if task_name == "celery.backend_cleanup":
        # Celery's daily cleanup (a topology schedule) also prunes the minute rows.
        from queueworks.metrics.services import task_minutes_prune

        task_minutes_prune()


def on_failure(sender=None, **kwargs):
    if RECORDER.enabled:
        RECORDER.add(_name(sender), names.FAILURE)


def on_retry(sender=None, request=None, **kwargs):
    if RECORDER.enabled:
        RECORDER.add(_name(sender, request), names.RETRY)


def on_revoked(sender=None, request=None, **kwargs):
    if RECORDER.enabled:
        RECORDER.add(_name(sender, request), names.REVOKED)


def on_shutdown(**kwargs):
    if RECORDER.enabled:
        RECORDER.flush_at_exit()


def connect() -> None:
    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="metrics.worker_init")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid="metrics.prerun")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="metrics.postrun")
    signals.task_failure.connect(on_failure, weak=False, dispatch_uid="metrics.failure")
    signals.task_retry.connect(on_retry, weak=False, dispatch_uid="metrics.retry")
    signals.task_revoked.connect(on_revoked, weak=False, dispatch_uid="metrics.revoked")
    signals.worker_process_shutdown.connect(on_shutdown, weak=False,
                                            dispatch_uid="metrics.process_shutdown")
    signals.worker_shutdown.connect(on_shutdown, weak=False, dispatch_uid="metrics.shutdown")
    os.register_at_fork(after_in_child=RECORDER.forget_inherited)
