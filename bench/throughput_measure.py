"""The measurements of bench/throughput.py: rounds of each system, the producers
alone, and the bulk workers' memory over many tasks."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import requests

from bench import broker_stats, common
from bench.common import QueueWatcher
from bench.throughput_systems import CLASSES, Project, System, raw_publish, use_broker

# -- measurement ------------------------------------------------------------------
def wait_ready(watcher: QueueWatcher, system: System, timeout: float = 90) -> None:
    watcher.wait_exists(system.queue, timeout)
    watcher.wait_consumers(system.queue, getattr(system, "consumers", 1), timeout)


def measure_systems(names: list[str], n: int, rounds: int, log=print, *,
                    sizes: list[int] | None = None, scale: set[str] | None = None,
                    queue_policy: str = "none", live_max: int | None = None) -> list[dict]:
    """Every system set up at once, then measured round-robin: round 1 of each,
    then round 2 of each...  A noisy minute on this shared machine then hits
    every system about equally instead of all rounds of one.

    ``sizes``: measure at each of these sizes in turn (default: ``[n]``); at
    every size after the first, only the systems in ``scale`` (default: all).
    One result per system and size; with ``sizes``, also what RabbitMQ
    reported about each drain's backlog.  Sizes above ``live_max`` are
    drained only (no publishing while consuming).  ``queue_policy``: bench/broker_stats.py's vhost policy."""
    record_broker = sizes is not None
    sizes = sizes or [n]
    with contextlib.ExitStack() as stack:
        entries = []
        for name in names:
            vhost = stack.enter_context(common.throwaway_vhost(f"bench-{name}"))
            broker_stats.apply_queue_policy(vhost, queue_policy)
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-{name}-"))
            system = CLASSES[name](vhost, Path(workdir))
            stack.callback(system.teardown)
            log(f"{name}: {system.description}")
            system.setup()
            watcher = QueueWatcher(vhost)
            stack.callback(watcher.close)
            entries.append((system, watcher))
        results = []
        for index, size in enumerate(sizes):
            chosen = [(s, w) for s, w in entries
                      if index == 0 or scale is None or s.name in scale]
            if size > common.MAX_TASKS:
                broker_stats.check_disk(size, len(chosen))
            batch = []
            for system, _ in chosen:
                batch.append({"system": system.name, "description": system.description,
                              "tasks": size, "queue_policy": queue_policy, "drain": [],
                              "live": [], "cpu_worker_us": [], "cpu_rabbit_us": [],
                              "rss_peak_mb": 0.0, "rss_process_mb": 0.0, "broker": [],
                              "sent": [], "executed": [], "failed": []})
            for round_no in range(1, rounds + 1):
                for (system, watcher), result in zip(chosen, batch):
                    measure_round(system, watcher, result, size, round_no, log,
                                  broker=record_broker,
                                  live=live_max is None or size <= live_max)
            results += batch
        return results


def measure_round(system: System, watcher: QueueWatcher, result: dict, n: int, round_no: int,
                  log=print, *, broker: bool = False, live: bool = True) -> None:
    """One drain and one live run of n tasks (``live=False``: the drain only).
    ``broker``: also what RabbitMQ reports with the drain's backlog queued
    (bench/broker_stats.py)."""
    name = system.name
    system.activate()
    timeout = max(120.0, n / 100)
    acked_before, failed_before = acked_total(system), system.failures()
    # drain: the backlog waits, then the workers start
    system.stop_workers()
    disk_before = broker_stats.node()["disk_free"] if broker else 0
    system.backlog(n)
    wait_depth(watcher, system.queue, n)
    if broker:
        snapshot = broker_stats.backlog_snapshot(system.vhost, system.queue, n, disk_before)
        result["broker"].append(snapshot)
        log(f"  {name} {n:,} queued: queue {snapshot['queue_memory_mb']:.0f} MiB, paged out "
            f"{snapshot['messages_paged_out']}, node {snapshot['node_mem_mb']:.0f}/"
            f"{snapshot['node_mem_limit_mb']:.0f} MiB, alarm {snapshot['mem_alarm']}, "
            f"disk +{snapshot['disk_used_mb']:.0f} MiB")
    system.start_workers()
    deadline = time.monotonic() + timeout
    while watcher.depth(system.queue) >= n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: workers never started consuming")
        time.sleep(0.002)
    t0 = time.perf_counter()
    meter = common.CpuMeter(system.roots()).start()
    monitor_roots = {str(pid): pid for pid in system.roots()}
    with common.RssMonitor(monitor_roots) as rss:
        t1 = watcher.wait_empty(system.queue, timeout)
        worker_cpu, rabbit_cpu = meter.stop()
    drain_rate = n / (t1 - t0)
    monitors = [rss]
    live_cpu, modes = (0.0, 0.0), 1
    if live:
        # live: publish while the (now idle) workers consume
        wait_ready(watcher, system)
        meter = common.CpuMeter(system.roots()).start()
        with common.RssMonitor(monitor_roots) as rss2:
            t0 = time.perf_counter()
            system.produce(n)
            t1 = watcher.wait_empty(system.queue, timeout)
            live_cpu = meter.stop()
        result["live"].append(n / (t1 - t0))
        monitors.append(rss2)
        modes = 2
    # An empty queue is not "done": count what the broker saw acknowledged
    # and what the workers logged as failed, for both modes of the round.
    executed = settled_acks(system, acked_before + modes * n) - acked_before
    # Idle workers of one system must not take CPU from the next one.
    system.stop_workers()
    failed = system.failures() - failed_before
    result["sent"].append(modes * n)
    result["executed"].append(executed)
    result["failed"].append(failed)
    result["drain"].append(drain_rate)
    result["cpu_worker_us"].append(1e6 * (worker_cpu + live_cpu[0]) / (modes * n))
    result["cpu_rabbit_us"].append(1e6 * (rabbit_cpu + live_cpu[1]) / (modes * n))
    # The drain alone: comparable across sizes whether or not live ran.
    result.setdefault("cpu_worker_drain_us", []).append(1e6 * worker_cpu / n)
    result.setdefault("cpu_rabbit_drain_us", []).append(1e6 * rabbit_cpu / n)
    for monitor in monitors:
        result["rss_peak_mb"] = max(result["rss_peak_mb"],
                                    max(monitor.peak_total.values()) / 2**20)
        result["rss_process_mb"] = max(result["rss_process_mb"],
                                       max(monitor.peak_process.values()) / 2**20)
    if broker:
        result["broker"][-1]["mem_alarm_after"] = bool(broker_stats.node().get("mem_alarm"))
    log(f"  {name} {n:,} round {round_no}: drain {drain_rate:,.0f}/s, "
        f"live {result['live'][-1] if live else 0:,.0f}/s, executed {executed}/{modes * n}, failed {failed} "
        f"(load {common.loadavg()})")


def _queue_stats(system: System) -> tuple[int, bool]:
    """(messages acknowledged on the system's queue since it was declared,
    nothing ready or unacknowledged), from RabbitMQ's management statistics,
    which are refreshed every few seconds."""
    try:
        info = common.rabbit.queue_info(system.vhost, system.queue)
    except requests.HTTPError as error:
        if error.response is None or error.response.status_code != 404:
            raise
        return 0, True  # not declared yet: nothing sent, nothing acknowledged
    acked = int((info.get("message_stats") or {}).get("ack", 0))
    return acked, not info.get("messages") and not info.get("messages_unacknowledged")


def acked_total(system: System) -> int:
    return _queue_stats(system)[0]


def settled_acks(system: System, expected: int, timeout: float = 180) -> int:
    """The ack count once it reaches ``expected``, or once the queue has been
    idle (nothing ready, nothing unacknowledged) with the same count for two
    statistics refreshes: an empty queue alone says nothing about messages
    still prefetched by a worker."""
    deadline = time.monotonic() + timeout
    idle_since: tuple[int, float] | None = None
    while True:
        acked, idle = _queue_stats(system)
        if acked >= expected or time.monotonic() > deadline:
            return acked
        if not idle:
            idle_since = None
        elif idle_since is None or idle_since[0] != acked:
            idle_since = (acked, time.monotonic())
        elif time.monotonic() - idle_since[1] > 12:
            return acked
        time.sleep(1)


def wait_depth(watcher: QueueWatcher, queue: str, n: int, timeout: float = 120) -> None:
    watcher.wait_exists(queue, timeout)
    deadline = time.monotonic() + timeout
    while watcher.depth(queue) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"backlog of {n} never reached {queue}")
        time.sleep(0.05)


def measure_producers(n: int, rounds: int, systems: list[str], log=print) -> list[dict]:
    """Publish-only rates (nobody consumes), each in its own throw-away vhost."""
    rows = []

    def run(label, fn, count):
        rates = []
        for _ in range(rounds):
            with common.throwaway_vhost("bench-producer") as vhost:
                rates.append(count / fn(vhost, count))
        rows.append({"producer": label, "tasks": count, "rates": rates})
        log(f"  producer {label}: {common.fmt_rate(rates)}/s")

    slow = max(1, min(n, 5000))
    if "raw" in systems:
        run("raw py-amqp publish (persistent, no confirms)",
            lambda v, c: raw_publish(v, "raw", c), n)
        run("raw py-amqp publish, confirms streamed",
            lambda v, c: raw_publish(v, "raw", c, confirm="stream"), n)
        run("raw py-amqp publish, confirm wait after each message",
            lambda v, c: raw_publish(v, "raw", c, confirm="each"), slow)
    if "celery" in systems:
        def celery_delay(vhost, count):
            from bench import celery_tutorial

            use_broker(celery_tutorial.app, common.rabbit.admin_broker_url(vhost))
            celery_tutorial.noop.delay(0)  # connect and declare first
            started = time.perf_counter()
            for i in range(count):
                celery_tutorial.noop.delay(i)
            elapsed = time.perf_counter() - started
            use_broker(celery_tutorial.app, "pyamqp://unused//")
            return elapsed
        run("Celery tutorial .delay() (no confirms)", celery_delay, slow)
    if "dramatiq" in systems:
        def dramatiq_send(vhost, count):
            import importlib

            from bench import dramatiq_app

            os.environ["BENCH_AMQP_URL"] = (f"amqp://{common.rabbit.AUTH[0]}:{common.rabbit.AUTH[1]}"
                                            f"@{common.rabbit.AMQP_HOSTPORT}/{vhost}")
            module = importlib.reload(dramatiq_app)
            module.noop.send(0)
            started = time.perf_counter()
            for i in range(count):
                module.noop.send(i)
            elapsed = time.perf_counter() - started
            module.broker.close()
            return elapsed
        run("Dramatiq .send()", dramatiq_send, n)
    if "project" in systems:
        def project_app(vhost):
            os.environ["CELERY_BROKER_URL"] = common.rabbit.admin_broker_url(vhost)
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
            os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
            # The benchmark task (noop) lives in apps/testing, installed by this flag.
            os.environ.setdefault("DJANGO_PROFILE", "development")
            os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
            import django

            django.setup()
            from projectname.celery import app

            use_broker(app, common.rabbit.admin_broker_url(vhost))
            return app

        def project_delay(vhost, count):
            app = project_app(vhost)
            from apps.testing.tasks import noop

            noop.delay(0)
            started = time.perf_counter()
            for i in range(count):
                noop.delay(i)
            elapsed = time.perf_counter() - started
            use_broker(app, "pyamqp://unused//")
            return elapsed

        def project_bulk(vhost, count):
            app = project_app(vhost)
            from queueworks.dispatch.services import tasks_enqueue_bulk
            from apps.testing.tasks import noop

            tasks_enqueue_bulk(task=noop, kwargs_list=[{"n": 0}])
            started = time.perf_counter()
            tasks_enqueue_bulk(task=noop, kwargs_list=[{"n": i} for i in range(count)])
            elapsed = time.perf_counter() - started
            use_broker(app, "pyamqp://unused//")
            return elapsed

        def raw_project_messages(vhost, count):
            """The limit for bulk enqueue: the same messages, raw py-amqp, confirms streamed."""
            import uuid as _uuid

            app = project_app(vhost)
            from queueworks.dispatch.services import _MessageBuilder
            from apps.testing.tasks import noop

            build = _MessageBuilder(app, noop, app.conf.task_default_priority)
            messages = [build(str(_uuid.uuid4()), {"n": i}) for i in range(count)]
            elapsed = raw_publish(vhost, "raw", count, confirm="stream", messages=messages)
            use_broker(app, "pyamqp://unused//")
            return elapsed

        confirm = "with confirm per message" if _project_confirms() else "no confirms"
        run(f"project .delay() as configured ({confirm})", project_delay, slow)
        run("project tasks_enqueue_bulk (one batch, confirms streamed)", project_bulk, n)
        run("raw py-amqp publish of the same Celery messages, prebuilt, confirms streamed",
            raw_project_messages, n)
    return rows


def _project_confirms() -> bool:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    # The benchmark task (noop) lives in apps/testing, installed by this flag.
    os.environ.setdefault("DJANGO_PROFILE", "development")
    os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
    from django.conf import settings

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    return bool(options.get("confirm_publish"))


def measure_memory(n: int, log=print) -> dict:
    """RSS of the project's bulk workers after a warm-up, and after n more tasks."""
    with common.throwaway_vhost("bench-memory") as vhost, \
            tempfile.TemporaryDirectory(prefix="bench-memory-") as workdir:
        system = Project(vhost, Path(workdir))
        watcher = None
        try:
            system.setup()
            watcher = QueueWatcher(vhost)
            system.start_workers()
            wait_ready(watcher, system)
            warmup = min(5000, n)
            system.produce(warmup)
            watcher.wait_empty(system.queue, 300)
            time.sleep(1)
            return rss_over_tasks(system, watcher, n, step=10_000, timeout=600,
                                  roots=system.roots(), log=log)
        finally:
            if watcher:
                watcher.close()
            system.teardown()


def rss_over_tasks(system: System, watcher: QueueWatcher, n: int, *, step: int,
                   timeout: float, roots: list[int] | None = None, log=print) -> dict:
    """The RSS of the system's worker process trees now, after every ``step``
    of ``n`` more tasks, and at the end.  ``roots``: these process trees
    (default: the system's roots at each sample)."""
    def rss_now() -> int:
        current = roots if roots is not None else system.roots()
        return sum(common.rss_bytes(p) for root in current for p in common.tree(root))

    before, samples, done = rss_now(), [], 0
    while done < n:
        count = min(step, n - done)
        system.produce(count)
        watcher.wait_empty(system.queue, timeout)
        done += count
        samples.append(rss_now())
    time.sleep(1)
    after = rss_now()
    change = 100 * (after - before) / before
    log(f"  memory: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB ({change:+.1f}%) "
        f"over {n:,} tasks")
    return {"tasks": n, "before_mb": before / 2**20, "after_mb": after / 2**20,
            "max_mb": max(samples) / 2**20, "change_pct": change}
