"""Static pool allocation against the process balancer, on a bursty mixed workload.

    .venv/bin/python bench/balance.py                          # defaults below
    .venv/bin/python bench/balance.py --tasks 60 --bursts 3    # small

Lanes (2 or 3 queues, ``test.bench_a`` ...), each consumed by one prefork
worker program under supervisord, ``--budget`` processes in all
(bench/balance_topology.py).  The same workload runs twice, each time in a
throw-away vhost with a fresh supervisord:

* ``static``   every program keeps ``budget / lanes`` processes;
* ``balanced`` the same programs start the same, and the ``balancer`` program
               (queueworks/balancer) moves processes between them: each 1 to
               ``budget - (lanes - 1)``, ``--max-shift`` per decision, a
               ``--cooldown`` between decisions.

The workload: every lane gets a steady task every ``--steady-every`` seconds;
bursts of ``--tasks`` tasks land on one lane at a time, lane after lane,
``--period`` seconds apart (default: the time static allocation needs to run
a burst, plus 10 %).  Task lengths are uniform in ``--min-ms``..``--max-ms``
(sleep tasks, apps.testing.tasks.timed_sleep, seeded: both runs get the same
sequence).  Each task writes when it was sent and started; the wait is the
time from publish to start.  Reported per lane: p50/p95 wait of its burst
tasks, of its steady tasks while another lane bursts ("other") and p95 during
its own burst ("own", behind the burst), the mean time from a burst's first
publish to its last task done, and the total time from the first publish to
the last task done.  Targets: the bursting lane's p95 at least 2x
lower with the balancer, the other lanes' p95 within 1.2x of static.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import PROJECT_ROOT  # noqa: E402

TASK = "apps.testing.tasks.timed_sleep"
SETTINGS = "bench.balance_settings"
TOPOLOGY_PATH = "bench.balance_topology:TOPOLOGY"
MAX_BURST = 5_000
MAX_BURSTS = 50


@dataclass(frozen=True)
class Send:
    at: float
    lane: int
    # "burst"; "other": a steady task while another lane bursts; "own": a
    # steady task on the lane that bursts (it waits behind the burst).
    kind: str
    ms: int


def schedule(*, tasks: int, bursts: int, lanes: int, period: float, steady_every: float,
             min_ms: int, max_ms: int, seed: int) -> list[Send]:
    """Every publish of the run, by time from the start (the same for both modes)."""
    rng = random.Random(seed)
    sends = [Send(at=burst * period, lane=burst % lanes, kind="burst",
                  ms=rng.randint(min_ms, max_ms))
             for burst in range(bursts) for _ in range(tasks)]
    end, tick = bursts * period, 0
    while tick * steady_every < end:
        for lane in range(lanes):
            # Lanes a fraction of the interval apart, not all at once.
            at = tick * steady_every + lane * steady_every / lanes
            bursting = int(at // period) % lanes
            sends.append(Send(at=at, lane=lane, kind="own" if lane == bursting else "other",
                              ms=rng.randint(min_ms, max_ms)))
        tick += 1
    return sorted(sends, key=lambda send: send.at)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def setup_django(work: Path, *, lanes: int, budget: int, max_shift: int, cooldown: float) -> str:
    return common.django_with_migrated_sqlite(
        work / "balance.sqlite3", settings=SETTINGS, secret="balance-bench-secret-key",
        environment={"BENCH_BALANCE_QUEUES": str(lanes), "BENCH_BALANCE_BUDGET": str(budget),
                     "BENCH_BALANCE_MAX_SHIFT": str(max_shift),
                     "BENCH_BALANCE_COOLDOWN": str(cooldown)})


def program_files(*, balanced: bool) -> dict[str, str]:
    from queueworks.core.supervisor import balancer_program, render_program, render_program_files
    from bench.balance_topology import PROGRAMS, TOPOLOGY

    files = {name: text for name, text in render_program_files(TOPOLOGY).items()
             if name.removesuffix(".conf") in PROGRAMS}
    if balanced:
        files["balancer.conf"] = render_program(balancer_program(topology_path=TOPOLOGY_PATH))
    return {name: text.replace('DJANGO_SETTINGS_MODULE="projectname.settings"',
                               f'DJANGO_SETTINGS_MODULE="{SETTINGS}"')
            for name, text in files.items()}


def run_mode(mode: str, sends: list[Send], *, work: Path, database_url: str) -> dict:
    from queueworks.balancer.models import BalanceDecision
    from bench.balance_topology import PROGRAMS, QUEUES, TOPOLOGY
    from projectname.celery import app
    from tests.support import rabbit
    from tests.support.programs import programs_system

    kombu_queues = {queue.name: queue.to_kombu() for queue in TOPOLOGY.queues
                    if queue.name in QUEUES}
    log = work / f"{mode}.log"
    with common.throwaway_vhost("bench-balance") as vhost:
        rabbit.point_app_at(app, vhost)
        system = programs_system(
            run_dir=work / mode, vhost=vhost, broker_url=rabbit.broker_url(vhost),
            database_url=database_url, files=program_files(balanced=mode == "balanced"),
            workers=list(PROGRAMS))
        try:
            system.start()
            decided_before = BalanceDecision.objects.count()
            kinds: dict[str, tuple[str, str, float]] = {}
            started = time.monotonic()
            for send in sends:
                delay = started + send.at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                queue = QUEUES[send.lane]
                result = app.send_task(TASK, kwargs={"ms": send.ms, "sent_at": time.time(),
                                                     "log": str(log)},
                                       queue=kombu_queues[queue])
                kinds[result.id] = (queue, send.kind, send.at)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                if log.exists() and len(log.read_text().splitlines()) >= len(sends):
                    break
                time.sleep(0.5)
            else:
                raise TimeoutError(f"{mode}: not every task ran within 600 s")
            moves = BalanceDecision.objects.count() - decided_before
        finally:
            system.stop()

    waits: dict[tuple[str, str], list[float]] = {}
    # (queue, burst's scheduled start) -> [first publish, last task done].
    bursts: dict[tuple[str, float], list[float]] = {}
    first_sent, last_done = float("inf"), 0.0
    for line in log.read_text().splitlines():
        task_id, _, sent, start, done = line.split()
        queue, kind, at = kinds[task_id]
        waits.setdefault((queue, kind), []).append(float(start) - float(sent))
        first_sent, last_done = min(first_sent, float(sent)), max(last_done, float(done))
        if kind == "burst":
            span = bursts.setdefault((queue, at), [float(sent), float(done)])
            span[0], span[1] = min(span[0], float(sent)), max(span[1], float(done))
    completions = {queue: [done - sent for (lane, _), (sent, done) in bursts.items()
                           if lane == queue] for queue in QUEUES}
    return {
        "mode": mode, "moves": moves, "total_seconds": last_done - first_sent, "tasks": len(kinds),
        "lanes": {queue: {**{kind: {"p50": percentile(waits.get((queue, kind), []), 0.5),
                                    "p95": percentile(waits.get((queue, kind), []), 0.95),
                                    "n": len(waits.get((queue, kind), []))}
                             for kind in ("burst", "other", "own")},
                          # Mean seconds from a burst's first publish to its last task done.
                          "burst_completion": (statistics.mean(completions[queue])
                                               if completions[queue] else float("nan"))}
                  for queue in QUEUES},
    }


def report(results: list[dict], *, args, load_before: str) -> None:
    print(f"\nbalancer benchmark: {args.queues} lanes, budget {args.budget} processes "
          f"(static {args.budget // args.queues} each; balanced 1-{args.budget - args.queues + 1} "
          f"each, max shift {args.max_shift}, cooldown {args.cooldown:g} s); {args.bursts} bursts "
          f"of {args.tasks} tasks every {args.period:.1f} s, a steady task per lane every "
          f"{args.steady_every:g} s, {args.min_ms}-{args.max_ms} ms sleeps")
    print(f"machine: {common.machine()}; load average before {load_before}, "
          f"after {common.loadavg()} (shared machine: numbers are noisy)")
    print("\nwait = publish to start.  burst: the lane's burst tasks; other: its steady tasks "
          "while another lane bursts; own: its steady tasks during its own burst; burst done: "
          "mean time from a burst's first publish to its last task done")
    print(f"\n{'mode':<9} {'lane':<13} {'burst p50':>10} {'burst p95':>10} {'other p50':>10} "
          f"{'other p95':>10} {'own p95':>9} {'burst done':>11} {'tasks':>6}")
    for result in results:
        for queue, kinds in result["lanes"].items():
            print(f"{result['mode']:<9} {queue:<13} {kinds['burst']['p50']:>9.2f}s "
                  f"{kinds['burst']['p95']:>9.2f}s {kinds['other']['p50']:>9.2f}s "
                  f"{kinds['other']['p95']:>9.2f}s {kinds['own']['p95']:>8.2f}s "
                  f"{kinds['burst_completion']:>10.2f}s "
                  f"{sum(kinds[kind]['n'] for kind in ('burst', 'other', 'own')):>6}")
        print(f"{result['mode']:<9} {'total':<13} completion {result['total_seconds']:.1f} s, "
              f"{result['tasks']} tasks, {result['moves']} balancer moves")
    by_mode = {result["mode"]: result for result in results}
    if {"static", "balanced"} <= set(by_mode):
        static, balanced = by_mode["static"]["lanes"], by_mode["balanced"]["lanes"]
        print("\nbalanced against static (burst: static p95 / balanced p95, target >= 2x; "
              "other: balanced p95 / static p95, target <= 1.2x):")
        for queue in static:
            burst = static[queue]["burst"]["p95"] / max(balanced[queue]["burst"]["p95"], 1e-3)
            other = balanced[queue]["other"]["p95"] / max(static[queue]["other"]["p95"], 1e-3)
            done = static[queue]["burst_completion"] / max(balanced[queue]["burst_completion"],
                                                           1e-3)
            print(f"  {queue:<13} burst p95 {burst:.2f}x lower   other p95 {other:.2f}x of static"
                  f"   burst done {done:.2f}x sooner")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200, help="tasks per burst")
    parser.add_argument("--bursts", type=int, default=6, help="bursts, lane after lane")
    parser.add_argument("--queues", type=int, default=3, choices=(2, 3), help="lanes")
    parser.add_argument("--budget", type=int, default=12, help="processes in all")
    parser.add_argument("--max-shift", type=int, default=4)
    parser.add_argument("--cooldown", type=float, default=2.0)
    parser.add_argument("--steady-every", type=float, default=1.0)
    parser.add_argument("--period", type=float, default=None,
                        help="seconds between bursts (default: static's time for one, +10%%)")
    parser.add_argument("--min-ms", type=int, default=50)
    parser.add_argument("--max-ms", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default="static,balanced", help="modes, comma-separated")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (program logs, task log) and print it")
    args = parser.parse_args(argv)
    if not 1 <= args.tasks <= MAX_BURST:
        parser.error(f"--tasks must be 1-{MAX_BURST}")
    if not 1 <= args.bursts <= MAX_BURSTS:
        parser.error(f"--bursts must be 1-{MAX_BURSTS}")
    if args.budget % args.queues or args.budget < 2 * args.queues:
        parser.error("--budget must be a multiple of --queues, at least 2 per lane")
    if not 1 <= args.min_ms <= args.max_ms <= 5_000:
        parser.error("--min-ms and --max-ms: 1 <= min <= max <= 5000")
    if args.steady_every <= 0 or args.cooldown < 0 or args.max_shift < 1:
        parser.error("--steady-every > 0, --cooldown >= 0, --max-shift >= 1")
    modes = [mode.strip() for mode in args.only.split(",") if mode.strip()]
    if not modes or set(modes) - {"static", "balanced"}:
        parser.error("--only: static and/or balanced")
    if args.period is None:
        mean_seconds = (args.min_ms + args.max_ms) / 2000
        args.period = 1.1 * args.tasks * mean_seconds / (args.budget // args.queues)
    sends = schedule(tasks=args.tasks, bursts=args.bursts, lanes=args.queues, period=args.period,
                     steady_every=args.steady_every, min_ms=args.min_ms, max_ms=args.max_ms,
                     seed=args.seed)
    common.bounded(len(sends))
    load_before = common.loadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-balance-"))
    try:
        database_url = setup_django(work, lanes=args.queues, budget=args.budget,
                                    max_shift=args.max_shift, cooldown=args.cooldown)
        results = [run_mode(mode, sends, work=work, database_url=database_url) for mode in modes]
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(results, args=args, load_before=load_before)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
