"""Each custom piece of the bulk lane measured alone, side by side in one run.

    .venv/bin/python bench/pieces.py --tasks 3000 --rounds 3

One bulk worker with the deployed command line (``deploy/conf.d/bulk_worker_1.conf``:
solo pool, prefetch 128, time and memory limits) drains a backlog of noop
tasks sent by the project's bulk enqueue, once with every piece on and once
for each piece switched off alone (``DISPATCH_FAST_PATHS_OFF``,
queueworks/dispatch/switches.py).  Variants take turns within every round, so a
noisy minute on a shared machine hits all of them alike.  Every variant runs
under the same normal CPU policy: the deployed ``idle`` policy measures the
machine's other load rather than the worker.  A piece's gain is how much
faster the lane drains with it than without it (all-on / piece-off - 1).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import PROJECT_ROOT, QueueWatcher  # noqa: E402

ENV = "DISPATCH_FAST_PATHS_OFF"
# queueworks/dispatch/switches.py PIECES (not imported: that needs Django set up first).
PIECES = ("lean_path", "coalesced_acks")
QUEUE = "bulk"


def worker_command() -> list[str]:
    """bulk_worker_1's command line as committed, under this venv."""
    conf = (PROJECT_ROOT / "deploy" / "conf.d" / "bulk_worker_1.conf").read_text()
    line = next(line for line in conf.splitlines() if line.startswith("command="))
    argv = shlex.split(line.split("=", 1)[1].replace("%%", "%"))
    return [common.venv_bin(argv[0]), *argv[1:]]


def drain(vhost: str, off: str, n: int, enqueue, watcher: QueueWatcher) -> tuple[float, float]:
    """Tasks/s and worker CPU us/task for one backlog of ``n``."""
    enqueue(n)
    env = {**os.environ, ENV: off, "CELERY_CUSTOM_WORKER_POOL": "queueworks.dispatch.pool:SoloPool",
           "CELERY_WORKER_SEND_TASK_EVENTS": "0", "PYTHONPATH": str(PROJECT_ROOT),
           "CPU_SCHEDULING_POLICY": "normal"}
    command = [arg.replace("bulk_worker_1@%h", f"pieces-{uuid.uuid4().hex[:6]}@%h")
               for arg in worker_command()]
    worker = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        watcher.wait_consumers(QUEUE, 1, timeout=120)
        started_cpu = common.tree_cpu(worker.pid)
        seconds, counted = watcher.time_drain(QUEUE, n, timeout=max(120.0, n / 50))
        meter_seconds = common.tree_cpu(worker.pid) - started_cpu
    finally:
        common.stop_process(worker, timeout=60)
    return counted / seconds, 1e6 * meter_seconds / n


def render(rows: dict[str, dict], args) -> str:
    base = rows["all-on"]
    base_rate = common.median_range(base["rate"])[0]
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"machine {common.machine()}; load {common.loadavg()}",
        f"{args.tasks:,} noop tasks drained by one bulk worker per variant, {args.rounds} "
        "round(s): median (min-max)",
        "",
        "| variant | drain tasks/s | worker CPU us/task | piece's gain (drain) |",
        "|---|---|---|---|",
    ]
    for label, row in rows.items():
        rate = common.median_range(row["rate"])[0]
        gain = "-" if row is base else f"{base_rate / rate - 1:+.0%}"
        lines.append(f"| {label} | {common.fmt_rate(row['rate'])} | "
                     f"{common.median_range(row['cpu'])[0]:.0f} | {gain} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000, help="backlog per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pieces", default=",".join(PIECES),
                        help=f"comma-separated subset of {','.join(PIECES)}")
    args = parser.parse_args(argv)
    common.bounded(args.tasks)
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    pieces = common.pieces_option(parser, args.pieces, PIECES)
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    with common.throwaway_vhost("bench-pieces") as vhost:
        from tests.support import rabbit

        os.environ.update(CELERY_BROKER_URL=rabbit.broker_url(vhost),
                          DJANGO_SETTINGS_MODULE="projectname.settings")
        os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
        # The benchmark's task lives in the test-only app (apps/testing).
        os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
        os.environ.setdefault("DJANGO_PROFILE", "development")
        import django

        django.setup()
        from queueworks.dispatch.services import tasks_enqueue_bulk
        from apps.testing.tasks import noop

        def enqueue(n):
            tasks_enqueue_bulk(task=noop, kwargs_list=[{"n": i} for i in range(n)], queue=QUEUE)

        watcher = QueueWatcher(vhost)
        variants = {"all-on": "", **{f"{piece} off": piece for piece in pieces}}
        rows = {label: {"rate": [], "cpu": []} for label in variants}
        try:
            for round_no in range(1, args.rounds + 1):
                for label, off in variants.items():
                    rate, cpu = drain(vhost, off, args.tasks, enqueue, watcher)
                    rows[label]["rate"].append(rate)
                    rows[label]["cpu"].append(cpu)
                    log(f"  round {round_no} {label}: {rate:,.0f} tasks/s, {cpu:.0f} us/task "
                        f"(load {common.loadavg()})")
        finally:
            watcher.close()
    print(render(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
