"""Fair sharing against plain FIFO, side by side in one run.

    flock /tmp/bench.lock .venv/bin/python bench/fairness.py            # 50,000 A, 100 B
    .venv/bin/python bench/fairness.py --a-tasks 2000 --b-tasks 20      # a quick look

Tenant A enqueues ``--a-tasks`` tasks on one lane, then tenant B enqueues
``--b-tasks`` on the same lane, while its worker consumes.  On two lanes at
once, in one throw-away vhost, each with a worker program of the same shape
under supervisord (bench/fairness_topology.py): the FIFO lane (a plain queue,
today's behaviour) and the fair lane (``Queue(fair_buckets=8)``, the route's
``FairShare(key="tenant_id")``: queueworks/limits/fair.py).  Side by side, the
two lanes share whatever else the machine is doing (``--sequential``: one
after the other).  Tasks are sent with the project's bulk enqueue (confirms),
in batches of 5,000, to the lanes in turn.

Reported: B's wait (publish to start) p50/p95/max and the time until B's last
task finished; A's drain time (A's first publish to A's last task finished)
and A's p95 wait; the ratios FIFO / fair.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

SETTINGS = "bench.fairness_settings"
BATCH = 5000


def setup_django(work: Path, *, buckets: int, concurrency: int) -> str:
    return common.django_with_migrated_sqlite(
        work / "fairness.sqlite3", settings=SETTINGS, secret="fairness-bench-secret-key",
        environment={"BENCH_FAIR_BUCKETS": str(buckets),
                     "BENCH_FAIR_CONCURRENCY": str(concurrency)})


def program_files(program: str) -> dict[str, str]:
    from bench.fairness_topology import TOPOLOGY
    from queueworks.core.supervisor import render_program_files

    return {name: text.replace('DJANGO_SETTINGS_MODULE="projectname.settings"',
                               f'DJANGO_SETTINGS_MODULE="{SETTINGS}"')
            for name, text in render_program_files(TOPOLOGY).items()
            if name.removesuffix(".conf") == program}


def tenants(buckets: int) -> tuple[str, str]:
    """Two tenants in different buckets (two in one bucket share its turn)."""
    from queueworks.limits.fair import fair_bucket

    first = "tenant-a"
    second = next(name for name in (f"tenant-b{i}" if i else "tenant-b" for i in range(100))
                  if fair_bucket(name, buckets) != fair_bucket(first, buckets))
    return first, second


def send(queue: str, tenant: str, count: int, log: Path, ms: int) -> None:
    from bench.fairness_topology import TASK
    from queueworks.dispatch.services import tasks_enqueue_bulk

    for start in range(0, count, BATCH):
        size = min(BATCH, count - start)
        sent_at = time.time()
        tasks_enqueue_bulk(task=TASK, queue=queue, kwargs_list=[
            {"tenant_id": tenant, "sent_at": sent_at, "log": str(log), "ms": ms}
            for _ in range(size)])


def run(modes: list[str], *, a: str, b: str, args, work: Path, database_url: str,
        timeout: float = 1800) -> dict:
    """Run ``modes`` at once: one vhost, one worker program per lane, A's
    batches sent to the lanes in turn, then B's; so both lanes see the same
    machine (a shared one is noisy)."""
    from bench.fairness_topology import FAIR_PROGRAM, FAIR_QUEUE, FIFO_PROGRAM, FIFO_QUEUE
    from projectname.celery import app
    from tests.support import rabbit
    from tests.support.programs import programs_system

    lanes = {"fair": (FAIR_PROGRAM, FAIR_QUEUE), "fifo": (FIFO_PROGRAM, FIFO_QUEUE)}
    logs = {mode: work / f"{mode}.log" for mode in modes}
    total = args.a_tasks + args.b_tasks
    files = {name: text for mode in modes for name, text in program_files(lanes[mode][0]).items()}
    with common.throwaway_vhost("bench-fair") as vhost:
        rabbit.point_app_at(app, vhost)
        system = programs_system(run_dir=work / "system", vhost=vhost,
                                 broker_url=rabbit.broker_url(vhost), database_url=database_url,
                                 files=files, workers=[lanes[mode][0] for mode in modes])
        try:
            system.start()
            for tenant, count in ((a, args.a_tasks), (b, args.b_tasks)):
                for start in range(0, count, BATCH):
                    for mode in modes:
                        send(lanes[mode][1], tenant, min(BATCH, count - start), logs[mode],
                             args.ms)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if all(log.exists() and log.read_text().count("\n") >= total
                       for log in logs.values()):
                    break
                time.sleep(0.5)
            else:
                raise TimeoutError(f"not every task ran within {timeout:.0f} s")
        finally:
            system.stop()
    return {mode: measure(mode, logs[mode], a=a, b=b) for mode in modes}


def measure(mode: str, log: Path, *, a: str, b: str) -> dict:
    rows = [line.split() for line in log.read_text().splitlines()]
    by_tenant = {tenant: [(float(s), float(st), float(d)) for _, t, s, st, d in rows if t == tenant]
                 for tenant in (a, b)}
    waits = {tenant: [st - s for s, st, _ in runs] for tenant, runs in by_tenant.items()}
    first_a = min(s for s, _, _ in by_tenant[a])
    first_b = min(s for s, _, _ in by_tenant[b])
    return {
        "mode": mode, "runs": len(rows), "distinct": len({row[0] for row in rows}),
        "b_p50": common.percentile(waits[b], 50), "b_p95": common.percentile(waits[b], 95),
        "b_max": max(waits[b]), "b_done": max(d for _, _, d in by_tenant[b]) - first_b,
        "a_p95": common.percentile(waits[a], 95),
        "a_drain": max(d for _, _, d in by_tenant[a]) - first_a,
    }


def report(results: dict, *, args, a: str, b: str, load_before: str) -> None:
    from queueworks.limits.fair import fair_bucket

    fifo, fair = results["fifo"], results["fair"]
    print(f"\nfair sharing benchmark: tenant A ({a}, bucket {fair_bucket(a, args.buckets)}) "
          f"enqueues {args.a_tasks:,} tasks, then tenant B ({b}, bucket "
          f"{fair_bucket(b, args.buckets)}) {args.b_tasks:,}, on one lane; one prefork worker "
          f"per lane, concurrency {args.concurrency}, prefetch 1, acks late, {args.ms} ms per "
          f"task; fair lane: {args.buckets} sub-queues; lanes "
          f"{'one after the other' if args.sequential else 'side by side at the same time'}")
    print(f"machine: {common.machine()}; load average before {load_before}, after "
          f"{common.loadavg()}")
    print("\n| | FIFO (today) | fair sharing | FIFO / fair |")
    print("|---|---:|---:|---:|")
    for key, label in (("b_p50", "B wait p50 s"), ("b_p95", "B wait p95 s"),
                       ("b_max", "B wait max s"), ("b_done", "B all done s after B's first send"),
                       ("a_p95", "A wait p95 s"), ("a_drain", "A drain s")):
        ratio = fifo[key] / fair[key] if fair[key] else float("inf")
        print(f"| {label} | {fifo[key]:.3f} | {fair[key]:.3f} | {ratio:.2f} |")
    print(f"| runs (distinct ids) | {fifo['runs']} ({fifo['distinct']}) | "
          f"{fair['runs']} ({fair['distinct']}) | |")
    change = (fair["a_drain"] / fifo["a_drain"] - 1) * 100
    print(f"\nB's p95 wait: {fifo['b_p95'] / fair['b_p95']:.1f}x lower with fair sharing "
          f"(target >= 20x); A's drain time {change:+.1f} % (target <= +10 %).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a-tasks", type=lambda v: common.bounded(int(v)), default=50_000)
    parser.add_argument("--b-tasks", type=lambda v: common.bounded(int(v)), default=100)
    parser.add_argument("--ms", type=int, default=0, help="sleep per task (ms)")
    parser.add_argument("--buckets", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--sequential", action="store_true",
                        help="one lane after the other instead of both at once")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    load_before = common.loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-fair-") as directory:
        work = Path(directory)
        database_url = setup_django(work, buckets=args.buckets, concurrency=args.concurrency)
        a, b = tenants(args.buckets)
        if args.sequential:
            results = {}
            for mode in ("fifo", "fair"):
                results.update(run([mode], a=a, b=b, args=args, work=work / mode,
                                   database_url=database_url))
        else:
            results = run(["fifo", "fair"], a=a, b=b, args=args, work=work,
                          database_url=database_url)
    for result in results.values():
        expected = args.a_tasks + args.b_tasks
        if result["runs"] != expected or result["distinct"] != expected:
            raise SystemExit(f"{result['mode']}: {result['runs']} runs of {result['distinct']} "
                             f"ids, expected {expected} each")
    report(results, args=args, a=a, b=b, load_before=load_before)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
