"""A concurrency limit's decisions in one round trip each, on PostgreSQL.

The database functions of migration 0005 take the same decisions as
``concurrency.slot_take`` and ``concurrency.slot_release`` with
``handoff.waiters_wake`` (which SQLite runs): through a network to the
database, the eight to ten statements of a decision were most of its cost,
and a flood of calls to park kept the lane's processes busy.

* ``slot_take_sql``: one statement, committed at once.  When it finds free
  slots with older calls waiting (a lease ended) it parks the call and says
  so; ``handoff.key_wake`` then hands the slots over in a transaction of its
  own.
* ``slot_release_sql``: in one transaction, the function gives the slot back
  and grants the free slots to the oldest parked calls; their messages are
  published (confirmed) before the commit, as handoff.py explains.  If a
  publish fails, the transaction is undone and the slot alone is given back:
  the calls stay parked for the next try.
"""

from __future__ import annotations

import json
import logging

from django.db import connection, transaction

from queueworks.limits.concurrency import PARKED
from queueworks.limits.handoff import key_wake, waiter_publish

logger = logging.getLogger(__name__)


def slot_take_sql(task, limits, *, key: str, task_id: str, grant: str, since: float | None,
                  message: dict, now: float | None = None) -> str:
    """RUN, PARKED or STALE (concurrency.py)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT queueworks_slot_take(%s::text, %s::text, %s::text, %s::text, %s::integer, "
            "%s::float8, %s::float8, %s::jsonb, %s::float8)",
            [limits.concurrency_name, key, task_id, grant, int(limits.concurrency.running),
             float(limits.lease_seconds), since,
             json.dumps(message) if message is not None else None, now])
        (outcome,) = cursor.fetchone()
    if outcome == "parked-free":
        key_wake(task, limits, key)
        return PARKED
    return outcome


def slot_release_sql(task, limits, *, key: str, task_id: str) -> int:
    """Give ``task_id``'s slot back, handing free slots on.  Returns the
    calls woken."""
    name, lease = limits.concurrency_name, float(limits.lease_seconds)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT * FROM queueworks_slot_release(%s::text, %s::text, %s::text, "
                    "%s::integer, %s::float8)",
                    [name, key, task_id, int(limits.concurrency.running), lease])
                woken = cursor.fetchall()
            for _, message, token in woken:
                if isinstance(message, str):
                    message = json.loads(message)
                waiter_publish(task, message, grant=token)
        return len(woken)
    except Exception as exc:  # noqa: BLE001 - the broker: the calls stay parked
        logger.warning("Could not hand %s[%s]'s slot to a waiting call (%s); it stays "
                       "parked until the next try.", name, key, exc)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM queueworks_slot_release(%s::text, %s::text, "
                       "%s::text, NULL, %s::float8)", [name, key, task_id, lease])
    return 0
