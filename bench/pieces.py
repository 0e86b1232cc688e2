"""Each custom piece of the bulk lane measured alone, side by side in one run.

    .venv/bin/python bench/pieces.py --tasks 3000 --rounds 2

The bulk lane exactly as deployed (bench/throughput.py's ``project``
system: supervisord, the committed bulk_worker_*.conf, the project's bulk
enqueue) once with every piece on, and once more for each piece with only
that piece switched off (``DISPATCH_FAST_PATHS_OFF``, apps/dispatch/switches.py).
Every variant is set up first and measured round-robin, so a noisy minute
on a shared machine hits all of them alike.  A piece's gain is how much
faster the lane is with it than without it (all-on / piece-off - 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common, throughput  # noqa: E402

ENV = "DISPATCH_FAST_PATHS_OFF"
# apps/dispatch/switches.py PIECES (not imported: that needs Django set up first).
PIECES = ("lean_path", "coalesced_acks", "chunked_reader")


def variant(piece: str | None) -> type:
    label = "all-on" if piece is None else f"{piece}-off"

    class Variant(throughput.Project):
        name = f"bulk-{label}"
        description = f"bulk lane, {label}"

        def setup(self):
            super().setup()
            self.system_env[ENV] = piece or ""

    return Variant


def render(results: list[dict], args) -> str:
    base = results[0]
    base_drain = common.median_range(base["drain"])[0]
    base_live = common.median_range(base["live"])[0]
    base_cpu = common.median_range(base["cpu_worker_us"])[0]
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"machine {common.machine()}; load {common.loadavg()}",
        f"{args.tasks:,} noop tasks per mode, {args.rounds} round(s), 2 bulk workers: "
        "median (min-max) tasks/s",
        "",
        "| variant | drain tasks/s | live tasks/s | worker CPU us/task | piece's gain: drain | "
        "live | CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        drain = common.median_range(result["drain"])[0]
        live = common.median_range(result["live"])[0]
        cpu = common.median_range(result["cpu_worker_us"])[0]
        gains = ("-", "-", "-") if result is base else (
            f"{base_drain / drain - 1:+.0%}", f"{base_live / live - 1:+.0%}",
            f"{1 - base_cpu / cpu:+.0%}")
        lines.append(f"| {result['description']} | {common.fmt_rate(result['drain'])} | "
                     f"{common.fmt_rate(result['live'])} | {cpu:.0f} | "
                     + " | ".join(gains) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per mode and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pieces", default=",".join(PIECES),
                        help=f"comma-separated subset of {','.join(PIECES)}")
    args = parser.parse_args(argv)
    common.bounded(args.tasks)
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    pieces = [name.strip() for name in args.pieces.split(",") if name.strip()]
    unknown = sorted(set(pieces) - set(PIECES))
    if unknown:
        parser.error(f"--pieces: unknown piece(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(PIECES)}")
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    names = []
    for piece in [None, *pieces]:
        cls = variant(piece)
        throughput.CLASSES[cls.name] = cls
        names.append(cls.name)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    results = throughput.measure_systems(names, args.tasks, args.rounds, log)
    print(render(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
