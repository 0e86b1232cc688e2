#!/usr/bin/env python
"""Rate and concurrency limits across two worker hosts of the test bed.

The test bed (deploy/testbed/testbed.sh): a 3-node RabbitMQ cluster, worker
hosts in network namespaces each with its own supervisord, here running the
bulk lane (bulk_worker_1, bulk_worker_2: 2 hosts x 2 processes), all sharing
one PostgreSQL database.  The tasks (apps/testing/tasks.py, routes in
projectname/topology.py) log "start/end key task_id pid epoch" to one file.

* rate: ``limits_bench_rate`` (20 starts/s per tenant, burst 2); 1,500 calls
  of one tenant published at once; the rate over 60 s of starts and the
  most starts in any 1-second window (bound: 20 + 2).
* concurrency: ``limits_bench_concurrency`` (3 at once per tenant); 150 calls
  of one tenant (200 ms each) published at once, and meanwhile one call of
  another tenant every 0.5 s: the most of the first tenant running at any
  instant (from the logged starts and ends, sampled every 10 ms too) and how
  soon the other tenants' calls started.
* cost: the drain of N calls without a limit (``limits_bench_plain``) and of
  N calls under a rate limit they never reach (``limits_bench_limited``, 100
  tenants), alternated twice in the same run; and what the start hook costs
  a task that declares no limit (timed in this process: every other task on
  every lane pays it).

Usage (root; takes the machine-wide benchmark lock itself is up to you):
  flock /tmp/bench.lock .venv/bin/python bench/limits.py
  flock /tmp/bench.lock .venv/bin/python bench/limits.py --rate-seconds 20 --cost-tasks 2000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.cluster_measure import Testbed, setup_django  # noqa: E402

PROGRAMS = "bulk_worker_1,bulk_worker_2"
TASKS = "apps.testing.tasks"
RATE, BURST, RUNNING = 20, 2, 3


def read_log(log: Path):
    rows = []
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:
                event, key, task_id, pid, epoch = parts
                rows.append((event, key, task_id, int(pid), float(epoch)))
    return rows


def publish(task: str, kwargs_list: list[dict]) -> float:
    from queueworks.dispatch.bulk import tasks_enqueue_bulk

    started = time.time()
    for chunk in range(0, len(kwargs_list), 1000):
        tasks_enqueue_bulk(task=task, kwargs_list=kwargs_list[chunk:chunk + 1000])
    return started


def wait_for_lines(log: Path, predicate, timeout: float):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = read_log(log)
        if predicate(rows):
            return rows
        time.sleep(0.5)
    return read_log(log)


def most_in_window(times: list[float], seconds: float = 1.0) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def scenario_rate(log: Path, seconds: float) -> dict:
    key = f"rate-{uuid.uuid4().hex[:8]}"
    calls = int(RATE * (seconds + 15))
    load = os.getloadavg()[0]
    publish(f"{TASKS}.limits_bench_rate", [{"tenant_id": key, "log": str(log)}] * calls)
    rows = wait_for_lines(log, lambda r: sum(1 for x in r if x[1] == key) >= calls,
                          timeout=calls / RATE + 60)
    starts = sorted(x[4] for x in rows if x[1] == key and x[0] == "start")
    # The rate over `seconds` of steady state, from 2 s after the first start.
    begin = starts[0] + 2.0
    in_window = [t for t in starts if begin <= t < begin + seconds]
    return {
        "calls": calls, "started": len(starts), "measured_rate": len(in_window) / seconds,
        "deviation_pct": 100.0 * (len(in_window) / seconds - RATE) / RATE,
        "most_in_1s": most_in_window(starts), "bound": RATE + BURST,
        "processes": len({x[3] for x in rows if x[1] == key}),
        "load_before": load, "load_after": os.getloadavg()[0],
    }


def scenario_concurrency(log: Path, calls: int = 150, ms: int = 200) -> dict:
    key = f"conc-{uuid.uuid4().hex[:8]}"
    load = os.getloadavg()[0]
    publish(f"{TASKS}.limits_bench_concurrency",
            [{"tenant_id": key, "ms": ms, "log": str(log)}] * calls)
    others: dict[str, float] = {}
    from apps.testing.tasks import limits_bench_concurrency as task

    for number in range(max(1, int(calls * ms / 1000 / RUNNING * 2) - 2)):
        other = f"{key}-other-{number}"
        others[other] = time.time()
        task.apply_async(kwargs={"tenant_id": other, "ms": 20, "log": str(log)})
        time.sleep(0.5)
    rows = wait_for_lines(
        log, lambda r: sum(1 for x in r if x[1] == key and x[0] == "end") >= calls
        and all(any(x[1] == o for x in r) for o in others), timeout=120)
    runs = defaultdict(dict)
    for event, k, task_id, _, epoch in rows:
        if k == key:
            runs[task_id][event] = epoch
    # A run without an end (it did not finish in time) counts as running to the last end.
    last_end = max((r["end"] for r in runs.values() if "end" in r), default=time.time())
    intervals = [(r["start"], r.get("end", last_end)) for r in runs.values() if "start" in r]
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    # A sampler at 10 ms over the whole run.
    first = min(s for s, _ in intervals)
    last = max(e for _, e in intervals)
    samples = over = 0
    instant = first
    while instant <= last:
        samples += 1
        if sum(1 for s, e in intervals if s <= instant < e) > RUNNING:
            over += 1
        instant += 0.01
    first_start = {}
    for event, k, _, _, epoch in rows:
        if event == "start" and k in others:
            first_start.setdefault(k, epoch)
    # A call that never started counts as waiting until now.
    latencies = [first_start.get(o, time.time()) - sent for o, sent in others.items()]
    return {
        "calls": calls, "finished": sum(1 for r in runs.values() if "end" in r),
        "most_running": most, "samples": samples, "instants_over": over,
        "others": len(others), "other_start_max": max(latencies),
        "other_start_median": statistics.median(latencies),
        "other_over_1s": sum(1 for latency in latencies if latency > 1.0),
        "load_before": load, "load_after": os.getloadavg()[0],
    }


def drain(log: Path, task: str, calls: int) -> dict:
    tag = uuid.uuid4().hex[:6]
    load = os.getloadavg()[0]
    kwargs = [{"tenant_id": f"cost-{tag}-{n % 100}", "log": str(log)} for n in range(calls)]
    started = publish(f"{TASKS}.{task}", kwargs)
    prefix = f"cost-{tag}-"
    rows = wait_for_lines(log, lambda r: sum(1 for x in r if x[1].startswith(prefix)) >= calls,
                          timeout=600)
    starts = [x[4] for x in rows if x[1].startswith(prefix)]
    seconds = max(starts) - started
    return {"task": task, "calls": calls, "ran": len(starts), "seconds": seconds,
            "per_second": len(starts) / seconds, "load_before": load,
            "load_after": os.getloadavg()[0]}


def hook_cost(rounds: int = 200_000) -> float:
    """Seconds per call of the start hook for a task with no limit declared
    (what every run of every other task pays), in this process."""
    import timeit

    from celery.app.task import Context

    from projectname.celery import app
    from queueworks.limits.enforcement import limits_enter

    task = app.tasks[f"{TASKS}.limits_bench_plain"]  # the task itself, as the worker has it
    request = Context(id="x", args=[], kwargs={})
    call = lambda: limits_enter(task, request, (), {})  # noqa: E731
    call()
    return min(timeit.repeat(call, number=rounds, repeat=5)) / rounds


def create_database() -> str:
    """A new PostgreSQL database (TEST_POSTGRES_URL's role creates it); it
    outlives this process with a --keep test bed, so no context manager."""
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    from tests.support.postgres import admin_url

    name = f"qw_bench_limits_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(admin_url())._replace(path=f"/{name}"))


def drop_database(url: str) -> None:
    """The database a --keep run created (tests/support/postgres.py)."""
    import psycopg

    from tests.support.postgres import admin_url

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate-seconds", type=float, default=60.0)
    parser.add_argument("--cost-tasks", type=int, default=5000)
    parser.add_argument("--scenarios", default="rate,concurrency,cost")
    parser.add_argument("--tag", default=os.environ.get("TESTBED_TAG", "l"))
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("TESTBED_BASE_PORT", 5740)))
    parser.add_argument("--net", type=int, default=int(os.environ.get("TESTBED_NET", 74)))
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="Leave the test bed running.")
    parser.add_argument("--no-up", action="store_true",
                        help="Use the test bed a --keep run left (build it outside the "
                             "benchmark lock: --scenarios none --keep).")
    parser.add_argument("--database-url", default=os.environ.get("TESTBED_DATABASE_URL"),
                        help="Default: a fresh PostgreSQL database (TEST_POSTGRES_URL).")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the test bed needs root (network namespaces, veth pairs)")
    os.environ["DJANGO_TEST_SUPPORT"] = "1"
    os.environ["DJANGO_PROFILE"] = "development"
    env = dict(os.environ, TESTBED_TAG=args.tag, TESTBED_BASE_PORT=str(args.base_port),
               TESTBED_HOSTS=str(args.hosts), TESTBED_PROGRAMS=PROGRAMS,
               TESTBED_NET=str(args.net))
    created = not (args.database_url or args.no_up)
    if args.database_url:
        env["TESTBED_DATABASE_URL"] = args.database_url
    elif args.no_up:
        env["TESTBED_DATABASE_URL"] = Path(f"/tmp/limits-bench-{args.tag}.db-url").read_text()
    else:  # PostgreSQL, as in production (TEST_POSTGRES_URL names a role that may create one)
        env["TESTBED_DATABASE_URL"] = create_database()
    Path(f"/tmp/limits-bench-{args.tag}.db-url").write_text(env["TESTBED_DATABASE_URL"])
    bed = Testbed(env)
    log = Path(f"/tmp/limits-bench-{uuid.uuid4().hex[:8]}.log")
    try:
        print(f"building the test bed (tag {args.tag}, {args.hosts} hosts: {PROGRAMS}) ...",
              flush=True)
        t0 = time.monotonic()
        if not args.no_up:
            bed.run("up", timeout=900)
        print(f"test bed up in {time.monotonic() - t0:.0f}s", flush=True)
        setup_django(bed.producer_env())
        import apps.testing.tasks  # noqa: F401 - the tasks the producer publishes
        from bench.cluster import wait_workers

        wait_workers(expected_hosts=args.hosts, programs=PROGRAMS.split(","))
        scenarios = args.scenarios.split(",")
        if "rate" in scenarios:
            print("rate ...", flush=True)
            r = scenario_rate(log, args.rate_seconds)
            print(f"\nRate limit {RATE}/s burst {BURST}, one tenant, {r['processes']} processes "
                  f"on {args.hosts} hosts ({r['calls']} calls at once)")
            print(f"  {'window':>8} {'measured/s':>11} {'vs R':>8} {'max in any 1 s':>15} "
                  f"{'bound':>6} {'load':>11}")
            print(f"  {args.rate_seconds:>7.0f}s {r['measured_rate']:>11.2f} "
                  f"{r['deviation_pct']:>+7.1f}% {r['most_in_1s']:>15} {r['bound']:>6} "
                  f"{r['load_before']:>5.2f}-{r['load_after']:.2f}", flush=True)
        if "concurrency" in scenarios:
            print("concurrency ...", flush=True)
            c = scenario_concurrency(log)
            print(f"\nConcurrency limit {RUNNING} per tenant: {c['calls']} calls of 200 ms of one "
                  f"tenant at once, {c['others']} calls of other tenants meanwhile")
            print(f"  {'finished':>8} {'most running':>13} {'10ms samples':>13} {'over 3':>7} "
                  f"{'other start max':>16} {'median':>8} {'over 1 s':>9} {'load':>11}")
            print(f"  {c['finished']:>8} {c['most_running']:>13} {c['samples']:>13} "
                  f"{c['instants_over']:>7} {c['other_start_max']:>15.3f}s "
                  f"{c['other_start_median']:>7.3f}s {c['other_over_1s']:>9} "
                  f"{c['load_before']:>5.2f}-{c['load_after']:.2f}", flush=True)
        if "cost" in scenarios:
            print("cost ...", flush=True)
            rows = [drain(log, task, args.cost_tasks)
                    for task in ("limits_bench_plain", "limits_bench_limited") * 2]
            print(f"\nCost: drain of {args.cost_tasks} calls on the bulk lane "
                  f"({args.hosts} hosts x 2 processes), alternated")
            print(f"  {'task':<22} {'seconds':>8} {'tasks/s':>9} {'load':>11}")
            for row in rows:
                print(f"  {row['task']:<22} {row['seconds']:>8.2f} {row['per_second']:>9.0f} "
                      f"{row['load_before']:>5.2f}-{row['load_after']:.2f}")
            plain = statistics.mean(r["per_second"] for r in rows if r["task"].endswith("plain"))
            limited = statistics.mean(r["per_second"] for r in rows
                                      if r["task"].endswith("limited"))
            processes = 2 * args.hosts
            print(f"  limited/plain throughput: {limited / plain:.3f}; per-task cost of the "
                  f"declared limit: {(1 / limited - 1 / plain) * processes * 1000:.2f} ms of a "
                  f"worker process ({processes} processes)", flush=True)
            hook = hook_cost()
            print(f"  the start hook of a task without a limit: {hook * 1e9:.0f} ns per run, "
                  f"{100 * hook / (processes / plain):.3f} % of a plain task's "
                  f"{processes / plain * 1e6:.0f} us per process", flush=True)
        return 0
    finally:
        if not args.keep:
            bed.run("down", timeout=600)
            if created or (args.no_up and not args.database_url):
                drop_database(env["TESTBED_DATABASE_URL"])
        log.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
