"""Enqueue cost from a real Django view, and enqueue-to-start latency per queue.

    .venv/bin/python bench/latency.py                       # defaults below
    .venv/bin/python bench/latency.py --requests 200 --concurrency 4 --seconds 3

Starts the whole system as deployed (supervisord from the committed
deploy/conf.d files: gunicorn web, every worker program, beat, flower) in a
throw-away RabbitMQ vhost with a temporary SQLite database, then measures:

1. HTTP (loopback only, a bounded number of requests from ``--concurrency``
   client threads): p50/p99 of
   * ``GET /health/`` (the HTTP baseline, no enqueue),
   * ``POST /api/v1/tasks/bulk/`` with one task, and the view's own enqueue
     time from its ``Server-Timing: enqueue;dur=`` header (pooled connection,
     publish, confirm: the time the enqueue adds to the request),
   * ``POST /api/v1/tasks/bulk/`` with 100 tasks (per request and per task),
   * ``POST /api/v1/tasks/`` (the Task API's single start: the pooled
     publisher, ``Server-Timing`` start, enqueue and the enqueue's CPU
     time), with ``--concurrency``
     clients, with 2 (as many as gunicorn workers), and with 1 client paced
     at ``PACED_RATE`` requests per second (a steady load that leaves the
     cores some idle time).
   Then one enqueue timed inside this process: ``task_enqueue()`` (pooled
   publisher, confirm in the background) against ``apply_async()`` (a confirm
   wait per message), wall and CPU time, with a CPU-only control timed
   between the calls (what waiting for a core adds to any code).
2. Enqueue-to-start: probe tasks sent at ``--rate`` per second for
   ``--seconds`` to each queue; latency = the worker's recorded start time
   minus the send time (same host clock), p50/p99 per queue; then the same on
   ``main_worker`` in ``--pairs`` alternating windows with ``heavy`` idle and
   with ``heavy`` holding a backlog of long tasks (the isolation ratio
   compares the two conditions' pooled samples).

The system is started by bench/latency_system.py; part 1 is measured in
bench/latency_http.py, part 2 in bench/latency_start.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import p50_p99, percentile  # noqa: E402
from bench.latency_http import measure_enqueue, measure_http  # noqa: E402
from bench.latency_start import measure_start_latency  # noqa: E402
from bench.latency_system import start_system  # noqa: E402

MAX_REQUESTS = 20_000


def render(http_rows, latency_rows, args, enqueue_rows=()) -> str:
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine {common.machine()}; "
        f"load {common.loadavg()}",
        "versions " + ", ".join(f"{k} {v}" for k, v in common.versions().items()),
        "",
        f"HTTP through gunicorn as deployed, {args.concurrency} concurrent loopback clients",
        "",
        "| request | requests | client p50 / p99 ms | enqueue in the view p50 / p99 ms "
        "(Server-Timing) | its CPU time p50 / p99 ms | whole start service p50 / p99 ms "
        "| req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in http_rows:
        lines.append(
            f"| {row['label']} | {row['requests']:,} | {p50_p99(row['client_ms'])} | "
            f"{p50_p99(row['enqueue_ms'])} | {p50_p99(row.get('enqueue_cpu_ms'))} | "
            f"{p50_p99(row.get('start_ms'))} | {row['requests_per_s']:.0f} |")
    if enqueue_rows:
        lines += ["", "One enqueue, timed inside one process (no HTTP, a 2 ms pause between calls)",
                  "", "| call | calls | p50 ms | p99 ms | max ms | thread CPU p50 / p99 ms |",
                  "|---|---|---|---|---|---|"]
        for row in enqueue_rows:
            values = row["ms"]
            lines.append(f"| {row['label']} | {len(values):,} | {percentile(values, 50):.3f} | "
                         f"{percentile(values, 99):.3f} | {max(values):.3f} | "
                         f"{p50_p99(row.get('cpu_ms'), digits=3)} |")
    lines += ["", f"Enqueue-to-start ({args.seconds:g} s per row or window)", "",
              "| queue | tasks/s sent | samples | p50 ms | p99 ms | max ms |",
              "|---|---|---|---|---|---|"]
    for row in latency_rows:
        values = row["ms"]
        lines.append(f"| {row['label']} | {row['rate']:g} | {len(values):,} | "
                     f"{percentile(values, 50):.1f} | {percentile(values, 99):.1f} | "
                     f"{max(values):.1f} |")
    idle = next((r for r in latency_rows if r.get("isolation") == "idle"), None)
    loaded = next((r for r in latency_rows if r.get("isolation") == "backlog"), None)
    if idle and loaded:
        ratio = percentile(loaded["ms"], 99) / percentile(idle["ms"], 99)
        per_window = ", ".join(f"{b / a:.2f}" for a, b in zip(idle["window_p99"],
                                                              loaded["window_p99"]))
        lines += ["", f"main_worker p99 with heavy backlog / heavy idle (all windows): "
                      f"{ratio:.2f}; p50 {percentile(loaded['ms'], 50) / percentile(idle['ms'], 50):.2f}; "
                      f"p99 ratio per window pair: {per_window}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per HTTP case")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--rate", type=float, default=20.0, help="probe tasks per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per latency row")
    parser.add_argument("--backlog", type=int, default=12, help="long heavy tasks held back")
    parser.add_argument("--backlog-seconds", type=float, default=20.0,
                        help="how long each backlog task runs")
    parser.add_argument("--pairs", type=int, default=3,
                        help="alternating heavy-idle / heavy-backlog windows for the isolation ratio")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be between 1 and {MAX_REQUESTS}")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    if not 0.1 <= args.rate <= 500 or not 0.5 <= args.seconds <= 600:
        parser.error("--rate must be 0.1-500 and --seconds 0.5-600")
    if not 0 <= args.backlog <= 200 or not 0 <= args.backlog_seconds <= 120:
        parser.error("--backlog must be 0-200 and --backlog-seconds 0-120")
    if not 1 <= args.pairs <= 10:
        parser.error("--pairs must be between 1 and 10")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    with common.throwaway_vhost("bench-latency") as vhost, \
            tempfile.TemporaryDirectory(prefix="bench-latency-") as workdir:
        log("starting the system (supervisord, committed deploy/conf.d) ...")
        system = start_system(Path(workdir), vhost)
        try:
            log("HTTP:")
            http_rows = measure_http(system, requests_total=args.requests,
                                     concurrency=args.concurrency, log=log)
            log("single enqueue in this process:")
            enqueue_rows = measure_enqueue(count=args.requests, log=log)
            log("enqueue-to-start:")
            latency_rows = measure_start_latency(
                system, rate=args.rate, seconds=args.seconds, backlog=args.backlog,
                backlog_seconds=args.backlog_seconds, pairs=args.pairs, log=log)
        finally:
            system.stop()
    print(render(http_rows, latency_rows, args, enqueue_rows))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"http": [{k: v for k, v in r.items()} for r in http_rows],
             "start_latency": latency_rows, "enqueue": enqueue_rows,
             "versions": common.versions(),
             "machine": common.machine(),
             "summary": {r["label"]: statistics.median(r["ms"]) for r in latency_rows}},
            indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
