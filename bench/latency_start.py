"""bench/latency.py, part 2: enqueue-to-start latency per queue (probe tasks
sent at a steady rate; the worker's recorded start minus the send time), and
``main_worker``'s with and without a backlog on ``heavy``."""

from __future__ import annotations

import time
import uuid

from bench import common
from bench.common import percentile, summary


def send_paced(*, task, rate: float, seconds: float, queue: str | None, extra: dict) -> dict:
    """Send ``rate`` tasks per second for ``seconds``; token -> send time (epoch s)."""
    sent: dict[str, float] = {}
    total = max(1, int(rate * seconds))
    started = time.monotonic()
    for number in range(total):
        due = started + number / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        token = f"lat-{uuid.uuid4().hex[:10]}"
        options = {"queue": queue} if queue else {}
        sent[token] = time.time()
        task.apply_async(kwargs={"token": token, **extra}, **options)
    return sent


def start_latencies(sent: dict[str, float], timeout: float) -> list[float]:
    from queueworks.core.models import ProbeRun

    deadline = time.monotonic() + timeout
    while True:
        rows = dict(ProbeRun.objects.filter(token__in=list(sent), started_at__isnull=False)
                    .values_list("token", "started_at"))
        if len(rows) == len(sent):
            return [(rows[token].timestamp() - sent[token]) * 1000 for token in sent]
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(rows)} of {len(sent)} probes started in {timeout}s")
        time.sleep(0.5)


def probe_window(*, rate: float, seconds: float, timeout: float, task=None,
                 queue: str | None = None, extra: dict | None = None) -> list[float]:
    """Send ``task`` (default: probe) at ``rate`` for ``seconds``; start latencies in ms."""
    from queueworks.core.tasks import probe

    return start_latencies(send_paced(task=task or probe, rate=rate, seconds=seconds,
                                      queue=queue, extra=extra or {}), timeout)


def measure_start_latency(system, *, rate: float, seconds: float, backlog: int,
                          backlog_seconds: float, pairs: int, log) -> list[dict]:
    from queueworks.core.tasks import heavy_probe, probe

    rows = []
    timeout = 60 + seconds * 4
    watcher = common.QueueWatcher(system.vhost)
    for label, task, queue, extra, task_rate in (
        ("main_worker (probe)", probe, None, {}, rate),
        ("celery (probe, sent to the default queue)", probe, "celery", {}, rate),
        ("heavy (heavy_probe, 0 s)", heavy_probe, None, {"seconds": 0}, max(1.0, rate / 4)),
    ):
        wait_idle(watcher)
        latencies = probe_window(task=task, rate=task_rate, seconds=seconds, timeout=timeout,
                                 queue=queue, extra=extra)
        rows.append({"label": label, "rate": task_rate, "ms": latencies})
        log(f"  {label} at {task_rate:g}/s: {summary(latencies)}")
    rows += measure_isolation(watcher, rate=rate, seconds=seconds, backlog=backlog,
                              backlog_seconds=backlog_seconds, pairs=pairs, timeout=timeout,
                              log=log)
    watcher.close()
    return rows


def measure_isolation(watcher, *, rate: float, seconds: float, backlog: int,
                      backlog_seconds: float, pairs: int, timeout: float, log) -> list[dict]:
    """main_worker's enqueue-to-start with ``heavy`` idle and while it holds a
    backlog of long tasks, in ``pairs`` alternating windows (idle, backlog,
    idle, backlog, ...): a noisy minute on this shared machine then hits both
    conditions, and each pools ``pairs`` times the samples of one window."""
    from queueworks.core.tasks import heavy_probe

    def window(row: dict) -> list[float]:
        latencies = probe_window(rate=rate, seconds=seconds, timeout=timeout)
        row["ms"] += latencies
        row["window_p99"].append(percentile(latencies, 99))
        return latencies

    idle = {"label": f"main_worker (probe), heavy idle ({pairs} windows)", "rate": rate,
            "ms": [], "window_p99": [], "isolation": "idle"}
    loaded = {"label": f"main_worker while heavy holds a backlog of {backlog} x "
                       f"{backlog_seconds:g} s tasks ({pairs} windows)", "rate": rate,
              "ms": [], "window_p99": [], "heavy_depth": [], "isolation": "backlog"}
    for pair in range(1, pairs + 1):
        wait_idle(watcher)
        log(f"  window {pair}, heavy idle: {summary(window(idle))}")
        holders = [f"hold-{uuid.uuid4().hex[:10]}" for _ in range(backlog)]
        for token in holders:
            heavy_probe.apply_async(kwargs={"token": token, "seconds": backlog_seconds})
        time.sleep(1)
        depth = watcher.depth("heavy")  # ready messages (the management API lags seconds)
        loaded["heavy_depth"].append(depth)
        log(f"  window {pair}, heavy backlog (depth ~{depth}): {summary(window(loaded))}")
        # Drop what still waits; let the started ones (and any message the
        # worker had prefetched) finish, so the next idle window is idle.
        purged = watcher.channel.queue_purge("heavy") or 0
        wait_finished(holders, len(holders) - purged, timeout=backlog_seconds * 4 + 30)
    return [idle, loaded]


def wait_finished(tokens: list[str], count: int, timeout: float) -> None:
    """Until ``count`` of the probe runs named by ``tokens`` have finished."""
    from queueworks.core.models import ProbeRun

    deadline = time.monotonic() + timeout
    while ProbeRun.objects.filter(token__in=tokens, finished_at__isnull=False).count() < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} heavy tasks did not finish within {timeout}s")
        time.sleep(0.5)


def wait_idle(watcher, timeout: float = 600) -> None:
    """Whatever earlier steps enqueued (e.g. the HTTP cases' tasks) has run."""
    for queue in ("main_worker", "celery", "heavy"):
        watcher.wait_empty(queue, timeout, interval=0.2)
    time.sleep(1)
