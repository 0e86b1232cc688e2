"""Reads of the task tallies: totals for /metrics, windows for /ops/."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Sum
from django.utils import timezone

from queueworks.metrics import names
from queueworks.metrics.models import TaskMinute, TaskTotal


@dataclass
class Histogram:
    """Non-cumulative bucket counts (key -> count) and the sum of the observations."""

    buckets: dict[str, float] = field(default_factory=dict)
    total: float = 0.0

    @property
    def count(self) -> float:
        return sum(self.buckets.values())

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound as text, observations <= it), "+Inf" last, as Prometheus shows them."""
        running, rows = 0.0, []
        for key in names.BUCKET_KEYS:
            running += self.buckets.get(key, 0.0)
            rows.append((key.removeprefix("le:"), running))
        return rows

    def quantile(self, q: float) -> float | None:
        """Estimated like Prometheus's histogram_quantile: linear within the bucket.

        None without observations; the largest finite bound when the quantile
        falls in the +Inf bucket.
        """
        count = self.count
        if not count:
            return None
        rank, running, lower = q * count, 0.0, 0.0
        for key in names.BUCKET_KEYS:
            in_bucket = self.buckets.get(key, 0.0)
            upper = names.bucket_bound(key)
            if running + in_bucket >= rank and in_bucket:
                if upper == float("inf"):
                    return lower
                return lower + (upper - lower) * (rank - running) / in_bucket
            running += in_bucket
            lower = upper if upper != float("inf") else lower
        return lower


@dataclass
class TaskTotals:
    outcomes: dict[str, float] = field(default_factory=dict)
    runtime: Histogram = field(default_factory=Histogram)


def _fold(rows) -> dict[str, TaskTotals]:
    tasks: dict[str, TaskTotals] = defaultdict(TaskTotals)
    for task_name, key, value in rows:
        entry = tasks[task_name]
        if key == names.RUNTIME_SUM:
            entry.runtime.total += value
        elif key.startswith("le:"):
            entry.runtime.buckets[key] = entry.runtime.buckets.get(key, 0.0) + value
        else:
            entry.outcomes[key] = entry.outcomes.get(key, 0.0) + value
    return dict(tasks)


def task_totals() -> dict[str, TaskTotals]:
    """Task name -> counts per outcome and runtime histogram since installation."""
    return _fold(TaskTotal.objects.values_list("task_name", "key", "value"))


# -- windows for /ops/ ---------------------------------------------------------
@dataclass
class TaskWindow:
    task_name: str
    runs: int
    failures: int
    per_minute: float
    p50: float | None
    p95: float | None


WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def task_windows(*, now: datetime | None = None) -> dict[str, list[TaskWindow]]:
    """"hour"/"day" -> per task name: runs, failures, runs per minute, runtime p50/p95.

    Percentiles are estimated from the runtime histogram's buckets (as
    Prometheus's ``histogram_quantile`` does), so they are as fine as the
    buckets in ``queueworks/metrics/names.py``.
    """
    now = now or timezone.now()
    result = {}
    for window, span in WINDOWS.items():
        since = now - span
        rows = (TaskMinute.objects.filter(minute__gte=since)
                .values_list("task_name", "key").annotate(value=Sum("value")))
        folded = _fold(rows)
        minutes = span.total_seconds() / 60
        result[window] = sorted(
            (TaskWindow(task_name=task_name, runs=int(entry.runtime.count),
                        failures=int(entry.outcomes.get(names.FAILURE, 0)),
                        per_minute=entry.runtime.count / minutes,
                        p50=entry.runtime.quantile(0.5), p95=entry.runtime.quantile(0.95))
             for task_name, entry in folded.items()),
            key=lambda row: (-row.runs, row.task_name))
    return result


def task_throughput_series(*, task_names: list[str], now: datetime | None = None,
                           minutes: int = 60, step: int = 1) -> dict[str, list[int]]:
    """Task name -> runs per ``step`` minutes over the last ``minutes`` (oldest first)."""
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    buckets = max(minutes // step, 1)
    start = now - timedelta(minutes=buckets * step - 1)
    series = {name: [0] * buckets for name in task_names}
    rows = (TaskMinute.objects.filter(minute__gte=start, task_name__in=task_names,
                                      key__startswith="le:")
            .values_list("task_name", "minute").annotate(value=Sum("value")))
    for task_name, minute, value in rows:
        index = int((minute - start).total_seconds() // 60) // step
        if 0 <= index < buckets:
            series[task_name][index] += int(value)
    return series
