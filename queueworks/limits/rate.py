"""Rate limits: at most ``starts`` starts per ``per_seconds`` per key, across
every process on every host, plus at most ``burst`` extra in one window.

The bucket is a generic cell rate algorithm (GCRA) on the (limit, key) row:
starts are spaced ``interval = per_seconds / starts`` apart, and a start may
come up to ``burst`` intervals early.  In any half-open window of
``per_seconds`` at most ``starts + burst`` calls start.  The bucket decides at
the moment of the start, so the bound holds whenever refused calls come back
(early, late, or many together).

A call the bucket refuses is told when to come back: refused calls are given
retry times one interval apart (``horizon``), never sooner than
``DEFER_MIN_SECONDS``, so with many waiting they return at about the limit's
rate, in the order they were refused.  Whoever asks when the bucket has a
start takes it: a call arriving for the first time while others wait is not
sent behind them, so during a flood the calls being received keep the limit
busy while the deferred ones are still on their way back (a deferred message
lands behind the flood in the queue).

The burst is taken a little thinner than declared: the last of a burst
starts ``START_JITTER_SECONDS`` (or one interval, if shorter) after the
first, not together with it.  The bucket decides when a call may start; the
task body begins a few milliseconds later, by more on a loaded host, and a
bound that was exactly reached at the decisions would then be passed by the
starts as the body sees them.  The long-run rate is unchanged.

On PostgreSQL the decision is one database function (``rate_sql.py``); elsewhere
``rate_start_take`` takes it in the caller's transaction.
"""

from __future__ import annotations

import time

from queueworks.limits.declaration import RateLimit
from queueworks.limits.locking import limit_key_locked

# A deferred call comes back after at least this long.  Its message is
# published with the delay as a countdown: on quorum queues Celery's native
# delayed delivery counts whole seconds (apply_async rounds a shorter delay
# up to 1 s), so a promise sooner than this would come back late, and the
# start it was promised would go unused.
DEFER_MIN_SECONDS = 1.0


# How much later a body may begin than its decision without passing the
# window's bound (see the module's docstring).
START_JITTER_SECONDS = 0.05


def rate_interval(rule: RateLimit) -> float:
    return float(rule.per_seconds) / int(rule.starts)


def rate_tolerance(rule: RateLimit) -> float:
    """How early a start may come (GCRA's tolerance): ``burst`` intervals,
    less the start jitter allowance."""
    interval = rate_interval(rule)
    if not int(rule.burst):
        return 0.0
    return int(rule.burst) * interval - min(interval, START_JITTER_SECONDS)


def rate_retry_at(*, tat: float, horizon: float, rule: RateLimit, now: float) -> float:
    """When a refused call should come back: one interval after the last
    promise, not before the bucket has a start, not sooner than
    ``DEFER_MIN_SECONDS``."""
    return max(horizon + rate_interval(rule), tat - rate_tolerance(rule),
               now + DEFER_MIN_SECONDS)


def rate_start_take(*, limit: str, key: str, rule: RateLimit,
                    now: float | None = None) -> float:
    """Take one start of ``rule`` for ``key`` at ``now`` (seconds since the
    epoch; by default the time once the row is locked, so the decisions of
    processes waiting on the lock are taken in the order of their times).

    Returns 0.0 when the call may start, else the seconds until it should try
    again.  Call inside ``transaction.atomic``: the row stays locked until it
    ends.
    """
    interval = rate_interval(rule)
    row = limit_key_locked(limit=limit, key=key)
    now = time.time() if now is None else now
    if now >= row.tat - rate_tolerance(rule):
        row.tat = max(row.tat, now) + interval
        row.last_start = now
        row.save(update_fields=["tat", "last_start"])
        return 0.0
    row.horizon = rate_retry_at(tat=row.tat, horizon=row.horizon, rule=rule, now=now)
    row.save(update_fields=["horizon"])
    return row.horizon - now
