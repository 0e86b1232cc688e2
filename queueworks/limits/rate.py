"""Rate limits: at most ``starts`` starts per ``per_seconds`` per key, across
every process on every host, plus at most ``burst`` extra in one window.

The bucket is a generic cell rate algorithm (GCRA) on the (limit, key) row:
starts are spaced ``interval = per_seconds / starts`` apart, and a start may
come up to ``burst`` intervals early.  In any half-open window of
``per_seconds`` at most ``starts + burst`` calls start.

A refused call is told when to come back.  Refused calls are given retry
times one interval apart (``horizon``), so with many waiting they return at
about the limit's rate instead of all at once, in the order they were
refused; while any is waiting, a call arriving for the first time queues
behind them instead of taking the next start.
"""

from __future__ import annotations

import time

from queueworks.limits.declaration import RateLimit
from queueworks.limits.locking import limit_key_locked


def rate_interval(rule: RateLimit) -> float:
    return float(rule.per_seconds) / int(rule.starts)


def rate_start_take(*, limit: str, key: str, rule: RateLimit, waited: bool,
                    now: float | None = None) -> float:
    """Take one start of ``rule`` for ``key`` at ``now`` (seconds since the
    epoch; by default the time once the row is locked, so the decisions of
    processes waiting on the lock are taken in the order of their times).

    Returns 0.0 when the call may start, else the seconds until it should try
    again.  ``waited``: the call was refused before (it keeps its place).
    Call inside ``transaction.atomic``: the row stays locked until it ends.
    """
    interval = rate_interval(rule)
    tolerance = int(rule.burst) * interval
    row = limit_key_locked(limit=limit, key=key)
    now = time.time() if now is None else now
    earliest = row.tat - tolerance
    # Waiting calls come back at their promised times, a little late at
    # worst: one interval past the last promise they still go first.
    queue_ahead = not waited and row.horizon + interval > now
    if now >= earliest and not queue_ahead:
        row.tat = max(row.tat, now) + interval
        row.save(update_fields=["tat"])
        return 0.0
    retry_at = max(row.horizon + interval, earliest, now)
    row.horizon = retry_at
    row.save(update_fields=["horizon"])
    # Never an immediate retry: a message published back with no delay at all
    # would come straight back to a free process.
    return max(retry_at - now, interval / 10)
