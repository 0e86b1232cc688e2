"""A rate limit's whole decision in one round trip, on PostgreSQL.

The same decision as ``rate.rate_start_take`` plus its bookkeeping (the
tally, the list of waiting calls), taken by the database function
``queueworks_rate_decide`` (migration 0004): one call instead of a
transaction of five or six statements, each a round trip through the
network to the database, which were most of a decision's cost.  The
function locks the (limit, key) row first and then reads the database's
clock, so the decisions about a key from every process on every host are
taken one after the other and timed in that order.
"""

from __future__ import annotations

from django.db import connection

from queueworks.limits.declaration import RateLimit
from queueworks.limits.rate import DEFER_MIN_SECONDS, rate_interval, rate_tolerance


def rate_decide_sql(*, limit: str, key: str, rule: RateLimit, task_id: str,
                    since: float | None, now: float | None = None) -> float:
    """0.0 when the call may start, else the seconds until it should come
    back.  ``since``: when the call was first refused (None: never).
    ``now``: the decision's time (None: the database's clock, once locked)."""
    interval = rate_interval(rule)
    with connection.cursor() as cursor:
        cursor.execute("SELECT queueworks_rate_decide(%s::text, %s::text, %s::float8, "
                       "%s::float8, %s::float8, %s::text, %s::float8, %s::float8)",
                       [limit, key, interval, rate_tolerance(rule), DEFER_MIN_SECONDS,
                        task_id, since, now])
        (wait,) = cursor.fetchone()
    return float(wait)
