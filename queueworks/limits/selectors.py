"""What the rate and concurrency limits are doing, per limit and key, for
/ops/ and /metrics: calls waiting, slots running, starts and refusals so
far, and the seconds calls waited for their limit before starting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from django.db.models import Count, Min

from queueworks.limits.models import ConcurrencySlot, LimitTally, LimitWaiter


# A waiting call whose retry time is this far past without a start is not
# waiting any more (cancelled, expired, dead-lettered): not counted.
STALE_WAITER = timedelta(minutes=10)


@dataclass
class LimitState:
    limit: str
    key: str
    waiting: int = 0
    running: int = 0
    started: int = 0
    refused: int = 0
    waited_seconds: float = 0.0
    oldest_waiting_since: datetime | None = None

    @property
    def task(self) -> str:
        return self.limit.rpartition(":")[0]

    @property
    def kind(self) -> str:
        return self.limit.rpartition(":")[2]

    @property
    def mean_wait_seconds(self) -> float | None:
        return self.waited_seconds / self.started if self.started else None


def limit_states(*, now: datetime | None = None) -> list[LimitState]:
    """Every (limit, key) seen, by limit then key.  Three queries."""
    now = now or datetime.now(timezone.utc)
    states: dict[tuple[str, str], LimitState] = {}

    def state(limit: str, key: str) -> LimitState:
        found = states.get((limit, key))
        if found is None:
            found = states[(limit, key)] = LimitState(limit=limit, key=key)
        return found

    for row in LimitTally.objects.all():
        entry = state(row.limit, row.key)
        entry.started, entry.refused, entry.waited_seconds = (row.started, row.refused,
                                                              row.waited_seconds)
    for row in (LimitWaiter.objects.filter(retry_at__gte=now - STALE_WAITER)
                .values("limit", "key")
                .annotate(count=Count("id"), oldest=Min("since"))):
        entry = state(row["limit"], row["key"])
        entry.waiting, entry.oldest_waiting_since = row["count"], row["oldest"]
    for row in (ConcurrencySlot.objects.filter(expires_at__gt=now)
                .values("limit", "key").annotate(count=Count("id"))):
        state(row["limit"], row["key"]).running = row["count"]
    return [states[k] for k in sorted(states)]
