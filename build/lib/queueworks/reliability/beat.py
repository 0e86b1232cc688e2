"""Exactly one beat: a lock held as a RabbitMQ exclusive queue.

``LockedScheduler`` (a file-backed schedule) and queueworks/ops/scheduler.py's
``DatabaseScheduler`` (the configured one) both use ``SingleBeatMixin``.

Before it schedules anything, beat declares the exclusive queue
``celery.beat.lock`` on a connection of its own.  RabbitMQ lets only one
connection own an exclusive queue (others get RESOURCE_LOCKED) and deletes it
when that connection closes, so:

* a second beat started by mistake, on this host or any other, logs that it is
  standing by and sends nothing; it takes over within ``LOCK_RETRY_SECONDS``
  when the first one stops or dies (no stale lock to clean up by hand);
* if beat loses its lock connection and somebody else has taken the lock
  meanwhile, it exits instead of scheduling twice (supervisor restarts it as
  a standby).

Missed runs: after a restart, a crontab entry whose slot passed while beat was
down fires once (not once per missed slot), and ``beat_sync_every = 1`` writes
the new ``last_run_at`` to the schedule file right after each send, so a beat
restart does not fire the same office-hours slot twice.
"""

from __future__ import annotations

import logging
import time

from celery.beat import PersistentScheduler
from kombu import Connection

logger = logging.getLogger(__name__)

LOCK_QUEUE = "celery.beat.lock"
LOCK_RETRY_SECONDS = 5


class BeatLock:
    """The exclusive-queue lock; ``acquire()`` returns False while another holds it."""

    def __init__(self, app, queue: str = LOCK_QUEUE):
        self.app = app
        self.queue = queue
        self.connection: Connection | None = None
        self.channel = None

    def acquire(self) -> bool:
        self.release()
        # heartbeat=0: this connection is idle between ticks; a missed
        # heartbeat must not drop the lock.
        connection = self.app.connection_for_write(heartbeat=0)
        try:
            connection.ensure_connection(max_retries=1)
            channel = connection.channel()
            channel.queue_declare(queue=self.queue, exclusive=True, auto_delete=True,
                                  durable=False)
        except connection.channel_errors + connection.connection_errors as exc:
            logger.info("Beat lock %r not acquired: %s", self.queue, exc)
            connection.release()
            return False
        self.connection, self.channel = connection, channel
        return True

    def held(self) -> bool:
        """Is our lock connection still alive (the queue still ours)?"""
        if self.connection is None:
            return False
        try:
            self.channel.queue_declare(queue=self.queue, passive=True)
            return True
        except Exception:  # noqa: BLE001 - any failure means we lost it
            self.release()
            return False

    def release(self) -> None:
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:  # noqa: BLE001
                pass
        self.connection, self.channel = None, None

    def abandon(self) -> None:
        """Forget the connection without a word to the broker: its socket
        closes with the process, and RabbitMQ drops the exclusive queue."""
        self.connection, self.channel = None, None


class SingleBeatMixin:
    """Scheduler mixin: tick only while holding the beat lock.

    The lock is taken on the first tick, not while the scheduler is being
    built: beat's SIGTERM handler touches the scheduler, and a constructor
    blocked waiting for the lock would make a standby beat unkillable.
    """

    lock_queue = LOCK_QUEUE
    lock_retry_seconds = LOCK_RETRY_SECONDS
    lock: BeatLock | None = None
    # True during a tick.  Beat's SIGTERM handler calls close() wherever the
    # main loop happens to be (celery/apps/beat.py), e.g. while a publish waits
    # for its confirm on the producer's connection: closing that connection
    # then reads the rest of a half-read frame as a new one, and beat hangs
    # until supervisor kills it.
    _ticking = False

    def _wait_for_lock(self) -> None:
        self.lock = BeatLock(self.app, self.lock_queue)
        standing_by = False
        while not self.lock.acquire():
            if not standing_by:
                logger.warning(
                    "Another beat holds the lock (queue %r): standing by, not scheduling.",
                    self.lock_queue)
                standing_by = True
            time.sleep(self.lock_retry_seconds)
        logger.info("Beat lock acquired (queue %r): this beat schedules.", self.lock_queue)

    def tick(self, *args, **kwargs):
        self._ticking = True
        try:
            if self.lock is None:
                self._wait_for_lock()
            elif not self.lock.held() and not self.lock.acquire():
                logger.error("Beat lost its lock to another beat: exiting without scheduling.")
                raise SystemExit(1)
            return super().tick(*args, **kwargs)
        finally:
            self._ticking = False

    def close(self):
        if self._ticking:
            # Interrupted mid-tick: the schedule is still saved (below), but
            # neither broker connection is touched; the process exits next.
            self.__dict__.pop("producer", None)
            self.__dict__.pop("connection", None)
            if self.lock is not None:
                self.lock.abandon()
        try:
            super().close()
        finally:
            if self.lock is not None:
                self.lock.release()


class LockedScheduler(SingleBeatMixin, PersistentScheduler):
    """Celery's file-based scheduler (``--schedule``) behind the beat lock."""
