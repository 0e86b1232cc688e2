"""Side-by-side throughput of noop tasks on the local RabbitMQ, in one run.

    .venv/bin/python bench/throughput.py                      # defaults below
    .venv/bin/python bench/throughput.py --tasks 20000 --rounds 3
    .venv/bin/python bench/throughput.py --only raw,project --tasks 2000 --rounds 1
    .venv/bin/python bench/throughput.py --only raw,dramatiq,project --rounds 1 \
        --sizes 20000,200000,1000000 --queue-policy v2     # how the cost grows with the backlog

Systems (each in its own throw-away vhost, deleted afterwards):

* ``raw``      the limit: py-amqp publishing persistent messages to a durable
               queue, one consumer process with manual acks, prefetch 100;
* ``celery``   Celery with its tutorial defaults (bench/celery_tutorial.py);
* ``dramatiq`` Dramatiq's RabbitMQ broker, 2 processes (bench/dramatiq_app.py);
* ``main``     this project's user-facing ``main_worker`` as deployed (prefork,
               priorities, prefetch 1, task events), the same way;
* ``project``  this project's bulk lane exactly as deployed: supervisord runs
               the committed deploy/conf.d/bulk_worker_*.conf (acks late,
               its pool, prefetch and limits), tasks sent with the project's
               bulk enqueue (persistent, durable queue, publisher confirms).

Modes: ``drain`` (a backlog of N tasks is waiting when the workers start) and
``live`` (the producer publishes N tasks while the workers consume; the time
runs from the first publish to an empty queue).  Rates are medians over the
rounds with min-max; CPU per task is user+system time of the worker process
trees and of the RabbitMQ node (the node is shared with anything else running
on it); RSS is the peak of the worker process tree.  Then the producers alone,
and optionally (``--memory-tasks``) the project worker's RSS over many tasks.
The systems are in bench/throughput_systems.py, the measurements in
bench/throughput_measure.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.broker_stats import QUEUE_POLICIES  # noqa: E402
from bench.throughput_measure import measure_memory, measure_producers, measure_systems  # noqa: E402
from bench.throughput_systems import SYSTEMS  # noqa: E402


# -- report -----------------------------------------------------------------------
def render_size(results: list[dict]) -> list[str]:
    """The table of one size: every system measured at it."""
    raw = next((r for r in results if r["system"] == "raw"), None)
    raw_drain = common.median_range(raw["drain"])[0] if raw else None
    raw_live = common.median_range(raw["live"])[0] if raw and raw["live"] else None
    lines = [
        "| system | drain tasks/s | x raw | live tasks/s | x raw | CPU us/task workers | "
        "CPU us/task RabbitMQ | peak RSS tree / largest process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        drain = common.median_range(r["drain"])[0]
        live = common.median_range(r["live"])[0] if r["live"] else None
        lines.append(
            f"| {r['description']} | {common.fmt_rate(r['drain'])} | "
            + (f"{drain / raw_drain:.2f}" if raw_drain else "-")
            + f" | {common.fmt_rate(r['live'])} | "
            + (f"{live / raw_live:.2f}" if raw_live and live else "-")
            + f" | {common.median_range(r['cpu_worker_us'])[0]:.0f} | "
            f"{common.median_range(r['cpu_rabbit_us'])[0]:.0f} | "
            f"{r['rss_peak_mb']:.0f} / {r['rss_process_mb']:.0f} MiB |")
    by = {r["system"]: r for r in results}
    if "project" in by:
        project = by["project"]
        ratios = []
        for other in ("celery", "dramatiq", "raw"):
            if other in by:
                for mode in ("drain", "live")[:2 if project["live"] and by[other]["live"] else 1]:
                    ratios.append(
                        f"{mode} project/{other} = "
                        f"{common.median_range(project[mode])[0] / common.median_range(by[other][mode])[0]:.2f}")
        lines += ["", "ratios: " + "; ".join(ratios)]
    return lines


def render_scaling(results: list[dict]) -> list[str]:
    """Each system across the sizes, with what RabbitMQ reported while the
    drain's backlog was queued."""
    lines = [
        "| system | tasks | drain x raw | live x raw | worker CPU us/task (drain) | RabbitMQ CPU "
        "us/task (drain) | worker RSS MiB (tree) | backlog: queue memory MiB | paged out | node memory / "
        "high-watermark MiB | memory alarm | disk MiB | queue version, mode |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    raws = {r["tasks"]: r for r in results if r["system"] == "raw"}
    for r in sorted(results, key=lambda r: (r["system"] != "raw", r["system"], r["tasks"])):
        if not r["broker"]:
            continue
        raw = raws.get(r["tasks"])
        ratio = (lambda mode: f"{common.median_range(r[mode])[0] / common.median_range(raw[mode])[0]:.2f}"
                 if raw and r[mode] and raw[mode] else "-")
        b = max(r["broker"], key=lambda snap: snap["node_mem_mb"])
        alarm = any(s["mem_alarm"] or s.get("mem_alarm_after") for s in r["broker"])
        lines.append(
            f"| {r['system']} | {r['tasks']:,} | {ratio('drain')} | {ratio('live')} | "
            f"{common.median_range(r['cpu_worker_drain_us'])[0]:.0f} | "
            f"{common.median_range(r['cpu_rabbit_drain_us'])[0]:.0f} | {r['rss_peak_mb']:.0f} | "
            f"{b['queue_memory_mb']:.0f} | {b['messages_paged_out']} | "
            f"{b['node_mem_mb']:,.0f} / {b['node_mem_limit_mb']:,.0f} | "
            f"{'YES' if alarm else 'no'} | {b['disk_used_mb']:,.0f} | "
            f"v{b['queue_version']}, {b['queue_mode']} |")
    return lines


def render(results: list[dict], producers: list[dict], memory: dict | None, args) -> str:
    v = common.versions()
    sizes = sorted({r["tasks"] for r in results})
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine {common.machine()}; "
        f"load {common.loadavg()}",
        "versions " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"queue policy on the benchmark's vhosts: {args.queue_policy}",
    ]
    for size in sizes:
        lines += ["", f"{size:,} noop tasks per mode, {args.rounds} round(s): "
                      "median (min-max) tasks/s", ""]
        lines += render_size([r for r in results if r["tasks"] == size])
    if len(sizes) > 1 or any(r["broker"] for r in results):
        lines += ["", "Across the sizes (RabbitMQ's figures with the drain's backlog queued):", ""]
        lines += render_scaling(results)
    if producers:
        lines += ["", "| producer alone | tasks | tasks/s |", "|---|---|---|"]
        lines += [f"| {p['producer']} | {p['tasks']:,} | {common.fmt_rate(p['rates'])} |"
                  for p in producers]
    if memory:
        lines += ["", f"project bulk workers' RSS (all processes) after warm-up "
                      f"{memory['before_mb']:.1f} MiB, after {memory['tasks']:,} more tasks "
                      f"{memory['after_mb']:.1f} MiB ({memory['change_pct']:+.1f}%), "
                      f"max sampled {memory['max_mb']:.1f} MiB"]
    return "\n".join(lines)


def raw_consumer(vhost: str, queue: str, prefetch: int) -> None:
    conn = common.amqp_connection(vhost)
    ch = conn.channel()
    ch.basic_qos(0, prefetch, False)

    def on_message(message):
        ch.basic_ack(message.delivery_tag)

    ch.basic_consume(queue, callback=on_message)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        conn.drain_events()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    consumer = sub.add_parser("_raw-consumer")
    consumer.add_argument("--vhost", required=True)
    consumer.add_argument("--queue", required=True)
    consumer.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument("--sizes", default="",
                        help="comma-separated sizes measured one after the other in one run "
                             f"(up to {common.MAX_BACKLOG:,}), e.g. 20000,200000,1000000; "
                             "replaces --tasks")
    parser.add_argument("--live-max", type=int, default=common.MAX_TASKS,
                        help="with --sizes: sizes above this are drained only (a backlog "
                             "published, then drained), without the live mode")
    parser.add_argument("--scale-only", default="raw,project",
                        help="with --sizes: the systems measured at the sizes after the first")
    parser.add_argument("--queue-policy", default="none", choices=sorted(QUEUE_POLICIES),
                        help="a policy on the benchmark's vhosts: classic queue version 2 "
                             "and/or lazy mode (bench/broker_stats.py)")
    parser.add_argument("--no-producers", action="store_true", help="skip the producer table")
    parser.add_argument("--memory-tasks", type=int, default=0,
                        help="also run this many tasks through the bulk workers and compare their RSS")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    if args.command == "_raw-consumer":
        raw_consumer(args.vhost, args.queue, args.prefetch)
        return 0
    common.bounded(args.tasks)
    try:
        sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    except ValueError:
        parser.error(f"--sizes: not a comma-separated list of numbers: {args.sizes!r}")
    for size in sizes:
        common.bounded(size, common.MAX_BACKLOG, "--sizes")
    if sizes:
        args.tasks = sizes[0]
    scale = {name.strip() for name in args.scale_only.split(",") if name.strip()}
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    if args.memory_tasks:
        common.bounded(args.memory_tasks)
    systems = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"--only: unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    unknown = sorted(scale - set(SYSTEMS))
    if unknown:
        parser.error(f"--scale-only: unknown system(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(SYSTEMS)}")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    import logging

    logging.getLogger("pika").setLevel(logging.WARNING)
    # Celery reads CELERY_RESULT_BACKEND from the environment before any app's
    # own configuration; the tutorial app must run without one (the project
    # gets django-db from its settings anyway).
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    results = measure_systems([name for name in SYSTEMS if name in systems], args.tasks,
                              args.rounds, log, sizes=sizes or None, scale=scale,
                              queue_policy=args.queue_policy, live_max=args.live_max)
    producers = [] if args.no_producers else measure_producers(
        min(args.tasks, common.MAX_TASKS), args.rounds, systems, log)
    memory = measure_memory(args.memory_tasks, log) if args.memory_tasks else None
    print(render(results, producers, memory, args))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"results": results, "producers": producers, "memory": memory,
             "versions": common.versions(), "machine": common.machine(), "tasks": args.tasks,
             "rounds": args.rounds, "sizes": sizes or [args.tasks],
             "queue_policy": args.queue_policy}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
