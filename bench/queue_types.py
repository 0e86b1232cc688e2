"""Classic against quorum queues for the bulk lane, on the same RabbitMQ node,
in one run.

    flock /tmp/bench.lock .venv/bin/python bench/queue_types.py --broker rabbitmq4
    flock /tmp/bench.lock .venv/bin/python bench/queue_types.py --tasks 5000 --rounds 2

Each round runs bench/throughput.py's ``project`` system (the bulk lane as
deployed: supervisord, the committed conf, the project's bulk enqueue with
publisher confirms) once with ``TASK_QUEUE_TYPE=classic`` and once with
``quorum``, alternating, each in a throw-away vhost of the chosen broker
(``rabbitmq4``: the 4.x node of tests/support/rabbitmq4.py, which must be
running; ``rabbitmq3``: the host's node).  A setting read at start-up decides
the queue type, so each measurement is its own process; the rounds alternate
so a noisy minute hits both types alike.  Modes as in bench/throughput.py:
``drain`` (the backlog waits when the workers start) and ``live`` (published
while the workers consume).  The type the broker really declared is checked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench import common  # noqa: E402

TYPES = ("classic", "quorum")


def measure(queue_type: str, *, broker: str, tasks: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-qtypes-") as workdir:
        out = Path(workdir) / "result.json"
        env = dict(os.environ, QUEUEWORKS_TEST_BROKER=broker, TASK_QUEUE_TYPE=queue_type)
        run = subprocess.run(
            [sys.executable, str(PROJECT_ROOT / "bench" / "throughput.py"), "--only", "project",
             "--rounds", "1", "--tasks", str(tasks), "--no-producers", "--json", str(out)],
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
        if run.returncode != 0:
            raise SystemExit(f"bench/throughput.py ({queue_type}) failed:\n{run.stderr[-3000:]}")
        data = json.loads(out.read_text())
    result = data["results"][0]
    if f"[{queue_type} queue]" not in result["description"]:
        raise SystemExit(f"asked for {queue_type} queues, the broker made: {result['description']}")
    return {"versions": data["versions"], "machine": data["machine"], **result}


def render(by_type: dict[str, list[dict]], args, loads: list[str]) -> str:
    merged = {t: {key: [v for r in runs for v in r[key]] for key in
                  ("drain", "live", "cpu_worker_us", "cpu_rabbit_us", "sent", "executed", "failed")}
              for t, runs in by_type.items()}
    versions = by_type["classic"][0]["versions"]
    classic = merged["classic"]
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine "
        f"{by_type['classic'][0]['machine']}; load before/after {loads[0]} / {loads[-1]}",
        f"broker {args.broker}: RabbitMQ {versions.get('rabbitmq', '?')}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "rabbitmq"),
        f"bulk lane, {args.tasks:,} noop tasks per mode, {args.rounds} round(s) per type "
        "(alternating): median (min-max) tasks/s",
        "",
        "| queue type | drain tasks/s | x classic | live tasks/s | x classic | "
        "CPU us/task workers | CPU us/task RabbitMQ | executed / sent | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for queue_type, m in merged.items():
        drain = common.median_range(m["drain"])[0]
        live = common.median_range(m["live"])[0]
        lines.append(
            f"| {queue_type} | {common.fmt_rate(m['drain'])} | "
            f"{drain / common.median_range(classic['drain'])[0]:.2f} | {common.fmt_rate(m['live'])} | "
            f"{live / common.median_range(classic['live'])[0]:.2f} | "
            f"{common.median_range(m['cpu_worker_us'])[0]:.0f} | "
            f"{common.median_range(m['cpu_rabbit_us'])[0]:.0f} | "
            f"{sum(m['executed']):,} / {sum(m['sent']):,} | {sum(m['failed'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("rabbitmq3", "rabbitmq4"), default="rabbitmq4")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per mode and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per queue type")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    common.bounded(args.tasks)
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    by_type: dict[str, list[dict]] = {t: [] for t in TYPES}
    loads = [common.loadavg()]
    for round_no in range(1, args.rounds + 1):
        for queue_type in TYPES:
            print(f"round {round_no}: {queue_type} (load {common.loadavg()})", file=sys.stderr,
                  flush=True)
            by_type[queue_type].append(measure(queue_type, broker=args.broker, tasks=args.tasks))
            loads.append(common.loadavg())
    print(render(by_type, args, loads))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": by_type, "loads": loads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
