"""The solo pool with time limits and a memory limit: the high-throughput worker's pool.

Celery's prefork pool costs an extra process hop per task (the parent
receives, a child runs, the result comes back over a pipe), and the parent
is the bottleneck: measured at about 2,000-2,500 noop tasks/s however it is
tuned.  The solo pool runs the task in the process that received it, which
is what ``bulk_worker`` needs (see docs/performance.md, the bulk lane).  Stock solo
ignores ``--time-limit``, ``--soft-time-limit`` and ``--max-memory-per-child``;
this subclass keeps them:

* time limits: ``queueworks/dispatch/timelimits.py`` (SIGALRM, and a watchdog that
  ends a process stuck past its hard limit);
* memory: every ``MEMORY_CHECK_EVERY`` tasks the resident size is read; above
  ``--max-memory-per-child`` (KiB) the worker stops warmly after the current
  task, and supervisor starts a fresh one.  Unacknowledged prefetched
  messages go back to the queue when its channel closes.

Select it with ``--pool=custom`` and ``CELERY_CUSTOM_WORKER_POOL`` set to
``queueworks.dispatch.pool:SoloPool`` (rendered by ``render_supervisor``).
"""

from __future__ import annotations

import logging
import os

from celery.concurrency.base import apply_target
from celery.concurrency.solo import TaskPool

from queueworks.dispatch.compat.celery import pool_info
from queueworks.dispatch.timelimits import TimeLimiter

logger = logging.getLogger(__name__)

MEMORY_CHECK_EVERY = 500
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def resident_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_KIB


# Through Celery's private pool-info hook: queueworks/dispatch/compat/celery.py.
@pool_info(lambda pool: pool.limits_info())
class SoloPool(TaskPool):
    #: queueworks.dispatch.lean's task strategy runs tasks inline in this pool.
    runs_inline = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limiter = TimeLimiter()
        self.soft_timeout = self.options.get("soft_timeout")
        self.timeout = self.options.get("timeout")
        self.max_memory_kib = self.options.get("max_memory_per_child")
        self._since_memory_check = 0
        self.on_apply = self._apply_with_limits

    def _apply_with_limits(self, target, args=None, kwargs=None, timeout=None,
                           soft_timeout=None, **options):
        soft = soft_timeout or self.soft_timeout
        hard = timeout or self.timeout
        try:
            return self.limiter.run(
                lambda: apply_target(target, args, kwargs, **options), soft, hard)
        finally:
            self.task_done()

    def run_limited(self, function, soft=None, hard=None):
        """Run ``function()`` under the task's limits (the worker defaults otherwise)."""
        return self.limiter.run(function, soft or self.soft_timeout, hard or self.timeout)

    def task_done(self) -> None:
        """Called after every task: stop warmly past the memory limit."""
        if not self.max_memory_kib:
            return
        self._since_memory_check += 1
        if self._since_memory_check < MEMORY_CHECK_EVERY:
            return
        self._since_memory_check = 0
        used = resident_kib()
        if used > self.max_memory_kib:
            from queueworks.dispatch.compat.celery import worker_state as state

            logger.warning("Worker process uses %d KiB (limit %d KiB): stopping after "
                           "this task so supervisor starts a fresh one.", used,
                           self.max_memory_kib)
            state.should_stop = 0

    def limits_info(self) -> dict:
        """The limits ``celery inspect stats`` shows for this pool."""
        return {"timeouts": (self.soft_timeout, self.timeout),
                "max-memory-per-child": self.max_memory_kib}
