"""A rate limit's whole decision in one statement, on PostgreSQL.

The same decision as ``rate.rate_start_take`` plus its bookkeeping (the
tally, the list of waiting calls), in one round trip instead of a
transaction of five or six: through a network to the database each round
trip is most of a decision's cost.  The row is locked (``FOR UPDATE``) for
the statement, so decisions about one key from any process on any host are
taken one after the other; the statement decides from the row as it is once
locked (READ COMMITTED re-reads a row another decision changed meanwhile).
"""

from __future__ import annotations

from django.db import IntegrityError, connection, transaction

from queueworks.limits.declaration import RateLimit
from queueworks.limits.models import LimitKey, LimitTally, LimitWaiter
from queueworks.limits.rate import DEFER_MIN_SECONDS, rate_interval

_STATEMENT = """
WITH o AS (
    SELECT id, tat, horizon, (%(now)s >= tat - %(tolerance)s) AS ok
    FROM {keys} WHERE "limit" = %(limit)s AND "key" = %(key)s FOR UPDATE
), d AS (
    UPDATE {keys} SET
        tat = CASE WHEN o.ok THEN GREATEST(o.tat, %(now)s) + %(interval)s ELSE o.tat END,
        horizon = CASE WHEN o.ok THEN o.horizon
                       ELSE GREATEST(o.horizon + %(interval)s, o.tat - %(tolerance)s,
                                     %(now)s + %(defer_min)s) END,
        last_start = CASE WHEN o.ok THEN %(now)s ELSE {keys}.last_start END
    FROM o WHERE {keys}.id = o.id
    RETURNING o.ok AS started, {keys}.horizon AS horizon
), tally AS (
    INSERT INTO {tallies} ("limit", "key", started, refused, waited_seconds)
    SELECT %(limit)s, %(key)s, CASE WHEN started THEN 1 ELSE 0 END,
           CASE WHEN started THEN 0 ELSE 1 END,
           CASE WHEN started THEN %(waited)s ELSE 0 END FROM d
    ON CONFLICT ("limit", "key") DO UPDATE SET
        started = {tallies}.started + EXCLUDED.started,
        refused = {tallies}.refused + EXCLUDED.refused,
        waited_seconds = {tallies}.waited_seconds + EXCLUDED.waited_seconds
), waiting AS (
    INSERT INTO {waiters} ("limit", "key", task_id, since, retry_at, state)
    SELECT %(limit)s, %(key)s, %(task_id)s, to_timestamp(%(since)s), to_timestamp(horizon),
           %(deferred)s FROM d WHERE NOT started
    ON CONFLICT ("limit", "key", task_id) DO UPDATE SET retry_at = EXCLUDED.retry_at
), gone AS (
    DELETE FROM {waiters} WHERE %(came_back)s AND "limit" = %(limit)s AND "key" = %(key)s
        AND task_id = %(task_id)s AND EXISTS (SELECT 1 FROM d WHERE started)
)
SELECT started, horizon FROM d
"""


def _statement() -> str:
    quote = connection.ops.quote_name
    return _STATEMENT.format(keys=quote(LimitKey._meta.db_table),
                             tallies=quote(LimitTally._meta.db_table),
                             waiters=quote(LimitWaiter._meta.db_table))


def rate_decide_sql(*, limit: str, key: str, rule: RateLimit, task_id: str,
                    since: float | None, now: float) -> float:
    """0.0 when the call may start, else the seconds until it should come
    back.  ``since``: when the call was first refused (None: never)."""
    interval = rate_interval(rule)
    params = {"limit": limit, "key": key, "now": now, "interval": interval,
              "tolerance": int(rule.burst) * interval, "defer_min": DEFER_MIN_SECONDS,
              "waited": max(0.0, now - since) if since is not None else 0.0,
              "task_id": task_id, "since": since if since is not None else now,
              "came_back": since is not None, "deferred": LimitWaiter.DEFERRED}
    for _ in range(2):
        with connection.cursor() as cursor:
            cursor.execute(_statement(), params)
            row = cursor.fetchone()
        if row is not None:
            started, horizon = row
            return 0.0 if started else horizon - now
        # The first call of this (limit, key): create its row, then decide.
        try:
            with transaction.atomic():
                LimitKey.objects.create(limit=limit, key=key)
        except IntegrityError:
            pass  # another process created it first
    raise RuntimeError(f"rate limit {limit}[{key}]: its row could not be created")
