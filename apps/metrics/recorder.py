"""Counting task outcomes and runtimes in the worker processes that run them.

Every worker process (a prefork child, a solo or lean-path worker, the main
process for revokes) adds to an in-memory tally from Celery's signals and a
daemon thread writes it to the database every ``FLUSH_SECONDS``
(``services.task_tallies_add``), and once more when the process shuts down.
Why the database and not task events or prometheus_client's multiprocess
mode: see docs/metrics.md ("Where the counts come from").

One flush per second per process, not one write per task: the bulk lane runs
thousands of tasks a second.  What a killed process (SIGKILL, OOM) had not
flushed is lost: at most its last ``FLUSH_SECONDS`` of counts.

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
from django.db import DatabaseError, close_old_connections

from apps.metrics import names

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class Recorder:
    def __init__(self):
        self.enabled = False
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, datetime, str], float] = defaultdict(float)
        self._started: dict[str, float] = {}
        self._thread_pid: int | None = None

    # -- counting ----------------------------------------------------------
    def add(self, task_name: str, key: str, amount: float = 1.0, *, at: float | None = None) -> None:
        minute = datetime.fromtimestamp(at if at is not None else time.time(), tz=timezone.utc) \
            .replace(second=0, microsecond=0)
        with self._lock:
            self._pending[(task_name, minute, key)] += amount
        self._ensure_flusher()

    def run_started(self, task_id: str) -> None:
        self._started[task_id] = time.monotonic()

    def run_finished(self, task_id: str, task_name: str) -> None:
        started = self._started.pop(task_id, None)
        if started is None:
            return
        seconds = time.monotonic() - started
        self.add(task_name, names.bucket_key(seconds))
        self.add(task_name, names.RUNTIME_SUM, seconds)

    # -- writing -----------------------------------------------------------
    def take(self) -> dict:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
        return dict(pending)

    def flush(self) -> None:
        pending = self.take()
        if not pending:
            return
        from apps.metrics.services import task_tallies_add

        try:
            task_tallies_add(deltas=pending)
        except DatabaseError:
            # Kept for the next flush: a busy or restarting database loses nothing.
            logger.exception("metrics: could not write %d task tallies; retrying", len(pending))
            with self._lock:
                for key, amount in pending.items():
                    self._pending[key] += amount

    def _ensure_flusher(self) -> None:
        pid = os.getpid()
        if self._thread_pid == pid:
            return
        with self._lock:
            if self._thread_pid == pid:
                return
            self._thread_pid = pid
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
                close_old_connections()

    def forget_inherited(self) -> None:
        """In a freshly forked child: the parent's tally is the parent's to write."""
        self._lock = threading.Lock()
        self._pending = defaultdict(float)
        self._started = {}
        self._thread_pid = None


RECORDER = Recorder()


def _name(sender, request=None) -> str:
    return getattr(sender, "name", None) or getattr(request, "name", None) or str(sender or "")


def on_worker_init(**kwargs):
    RECORDER.enabled = True


def on_prerun(sender=None, task_id=None, **kwargs):
    if RECORDER.enabled and task_id:
        RECORDER.run_started(task_id)


def on_postrun(sender=None, task_id=None, **kwargs):
    if RECORDER.enabled and task_id:
        RECORDER.run_finished(task_id, _name(sender))


def on_success(sender=None, **kwargs):
    if RECORDER.enabled:
        RECORDER.add(_name(sender), names.SUCCESS)


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
        RECORDER.flush()


def prune_after_backend_cleanup(sender=None, **kwargs):
    """Celery's daily ``celery.backend_cleanup`` also prunes the minute rows."""
    if getattr(sender, "name", None) == "celery.backend_cleanup":
        from apps.metrics.services import task_minutes_prune

        task_minutes_prune()


def connect() -> None:
    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="metrics.worker_init")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid="metrics.prerun")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="metrics.postrun")
    signals.task_success.connect(on_success, weak=False, dispatch_uid="metrics.success")
    signals.task_failure.connect(on_failure, weak=False, dispatch_uid="metrics.failure")
    signals.task_retry.connect(on_retry, weak=False, dispatch_uid="metrics.retry")
    signals.task_revoked.connect(on_revoked, weak=False, dispatch_uid="metrics.revoked")
    signals.worker_process_shutdown.connect(on_shutdown, weak=False,
                                            dispatch_uid="metrics.process_shutdown")
    signals.worker_shutdown.connect(on_shutdown, weak=False, dispatch_uid="metrics.shutdown")
    signals.task_postrun.connect(prune_after_backend_cleanup, weak=False,
                                 dispatch_uid="metrics.prune")
    os.register_at_fork(after_in_child=RECORDER.forget_inherited)
