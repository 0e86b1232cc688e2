"""What the limits are doing, for /ops/ and /metrics.

Rate and concurrency limits, per limit and key: calls waiting, slots running,
starts and refusals so far, and the seconds calls waited before starting.
Unique tasks: claims waiting and running per task, duplicates answered.  Fair
sharing: the depth of each sub-queue (per key bucket).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from django.db.models import Count, Min, Q
from django.utils import timezone as django_timezone

from queueworks.limits.models import ConcurrencySlot, LimitTally, LimitWaiter


# A deferred or woken call whose message was published this long ago without
# a start is not waiting any more (cancelled, expired, dead-lettered): not
# counted.  A parked call is counted however long it waits: the database holds
# it until a slot is handed to it.
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
    for row in (LimitWaiter.objects.filter(Q(state=LimitWaiter.PARKED)
                                           | Q(retry_at__gte=now - STALE_WAITER))
                .values("limit", "key")
                .annotate(count=Count("id"), oldest=Min("since"))):
        entry = state(row["limit"], row["key"])
        entry.waiting, entry.oldest_waiting_since = row["count"], row["oldest"]
    for row in (ConcurrencySlot.objects.filter(expires_at__gt=now)
                .values("limit", "key").annotate(count=Count("id"))):
        state(row["limit"], row["key"]).running = row["count"]
    return [states[k] for k in sorted(states)]


@dataclass(frozen=True)
class UniqueRow:
    task_name: str
    key: str  # the declaration's parameters
    waiting: int
    running: int
    expired: int  # past their lease, free for the next enqueue
    duplicates: int  # enqueues answered with the holder's id (refused)
    taken_over: int
    superseded: int  # messages that ran nothing: another task held the key


def unique_overview(topology) -> list[UniqueRow]:
    from queueworks.limits.models import UniqueClaim, UniqueTally

    declared = {route.task: route.unique for route in topology.routes if route.unique}
    if not declared:
        return []
    now = django_timezone.now()
    held = {row["task_name"]: row for row in UniqueClaim.objects.filter(
        task_name__in=list(declared)).values("task_name").annotate(
        waiting=Count("id", filter=Q(state=UniqueClaim.WAITING, expires_at__gt=now)),
        running=Count("id", filter=Q(state=UniqueClaim.RUNNING, expires_at__gt=now)),
        expired=Count("id", filter=Q(expires_at__lte=now)))}
    tallies = {t.task_name: t for t in UniqueTally.objects.filter(task_name__in=list(declared))}
    rows = []
    for task_name, unique in sorted(declared.items()):
        counts, tally = held.get(task_name, {}), tallies.get(task_name)
        rows.append(UniqueRow(
            task_name=task_name, key=", ".join(unique.parameters),
            waiting=counts.get("waiting", 0), running=counts.get("running", 0),
            expired=counts.get("expired", 0), duplicates=tally.duplicates if tally else 0,
            taken_over=tally.taken_over if tally else 0,
            superseded=tally.superseded if tally else 0))
    return rows


def unique_claims_recent(*, limit: int = 20) -> list[dict]:
    from queueworks.limits.models import UniqueClaim

    return list(UniqueClaim.objects.order_by("-claimed_at").values(
        "task_name", "label", "task_id", "state", "claimed_at", "expires_at")[:limit])


def fair_queue_names(topology) -> list[str]:
    return [name for queue in topology.queues for name in queue.fair_queue_names()]


def fair_overview(topology, stats: dict) -> list[dict]:
    """Per fair queue: its routes' keys and each sub-queue's depth (``stats``:
    name -> a state with ready/unacked/consumers, from the management API)."""
    rows = []
    for queue in topology.queues:
        if not queue.fair_buckets:
            continue
        keys = sorted({f"{route.task} by {route.fair_share.key}" for route in topology.routes
                       if route.queue == queue.name and route.fair_share})
        buckets = []
        for bucket, name in enumerate(queue.fair_queue_names()):
            state = stats.get(name)
            buckets.append({"bucket": bucket, "queue": name,
                            "ready": getattr(state, "ready", None),
                            "unacked": getattr(state, "unacked", None),
                            "consumers": getattr(state, "consumers", None)})
        busy = [b for b in buckets if b["ready"]]
        rows.append({"queue": queue.name, "routes": keys, "buckets": buckets,
                     "busy_buckets": len(busy)})
    return rows
