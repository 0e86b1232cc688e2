"""Where main_worker's CPU per task goes: one feature at a time, in one run.

    .venv/bin/python bench/main_lane.py                          # defaults below
    .venv/bin/python bench/main_lane.py --tasks 2000 --rounds 2
    .venv/bin/python bench/main_lane.py --only celery,deployed,threads

Each variant is ``main_worker``'s command exactly as rendered from the
topology (``queueworks.core.supervisor.worker_command``: prefork -c 2, prefetch 1,
priorities, acks late, task events, INFO logs) with ONE thing changed, each in
its own throw-away vhost and database, measured round-robin next to Celery
with its tutorial defaults (bench/throughput.py's systems and rounds: drain a
waiting backlog, then publish while consuming).  The task is the noop
(``apps.testing.tasks.noop``, sent to ``main_worker`` by the project's bulk
enqueue); the variants marked "results" ask for its result (per-message
``ignore_result=False``: the STARTED and SUCCESS writes a result-keeping task
pays), through django-celery-results' stock backend or through
queueworks/core/results_backend.py ("upsert": one statement per state), "cancel lookup" marks every message as the Task API does for the tasks
it starts (one database read per delivery).

The ``solo-procs`` rows are the bulk lane's process design for this lane:
main_worker's command with the project's SoloPool (``--pool=custom``, SIGALRM
soft and hard limits, a watchdog ending a process stuck past its hard limit,
recycling past ``--max-memory-per-child``), ``--concurrency=1``, prefetch 2,
started once per core under its own node name; their CPU and RSS cover both
processes' trees (the RSS column is the larger of the two).

Then priority overtaking (``--backlog``), for the variants that differ only
in how many messages the worker holds: main_worker's workers stopped, a
backlog of priority-1 probes each taking ``--probe-seconds``, the workers
started, a priority-9 probe sent once the backlog runs; the row says how many
backlog tasks started before it (the target: fewer than 10 % of them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.throughput_measure import measure_round, rss_over_tasks, wait_ready  # noqa: E402
from bench.throughput_systems import CeleryTutorial, ProjectMain, use_broker  # noqa: E402
from bench.common import PROJECT_ROOT, QueueWatcher  # noqa: E402
from bench.main_lane_overtaking import measure_overtaking  # noqa: E402
from bench.main_lane_variants import BY_NAME, VARIANTS, Variant, recorded_header  # noqa: E402,F401


def postgres_database(name: str):
    """A database of our own on the shared PostgreSQL (trust on 127.0.0.1:5432)."""
    import psycopg

    admin = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                            autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')

    def drop():
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return f"postgres://postgres@127.0.0.1:5432/{name}", drop


class MainVariant(ProjectMain):
    """main_worker's rendered command with one change, started directly."""

    variant: Variant

    def __init__(self, vhost, workdir, variant: Variant, cleanups: contextlib.ExitStack):
        super().__init__(vhost, workdir)
        self.variant, self.cleanups = variant, cleanups
        self.name = variant.name
        self.description = variant.description
        self.process: subprocess.Popen | None = None

    def setup(self):
        super().setup()
        if self.variant.postgres:
            # The worker's database only (this process keeps the one it set
            # Django up with): created, migrated, dropped at the end.
            url, drop = postgres_database(f"bench_main_lane_{uuid.uuid4().hex[:8]}")
            self.cleanups.callback(drop)
            self.system_env["DATABASE_URL"] = url
            subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                           env=self.system_env, cwd=PROJECT_ROOT, check=True)

    @property
    def consumers(self) -> int:
        return self.variant.processes

    def command(self, index: int = 1) -> list[str]:
        from queueworks.core.supervisor import worker_command
        from projectname.topology import TOPOLOGY

        rendered = worker_command(TOPOLOGY.worker_named("main_worker")).replace("%%", "%")
        parts = rendered.split()
        for option, value in self.variant.options.items():
            parts = [part for part in parts if not part.startswith(option + "=")]
            parts.append(f"{option}={value}")
        if self.variant.processes > 1:
            # One node name per process, as supervisor's numbered programs would have.
            parts = [part.replace("main_worker@", f"main_worker_{index}@") for part in parts]
        return [common.venv_bin(parts[0]), *parts[1:]]

    def worker_env(self) -> dict[str, str]:
        from queueworks.core.supervisor import worker_environment
        from projectname.topology import TOPOLOGY

        env = dict(self.system_env)
        env.update(worker_environment(TOPOLOGY.worker_named("main_worker")))
        env.update(self.variant.env)
        env["PYTHONPATH"] = str(PROJECT_ROOT)
        return env

    def start_workers(self):
        log = open(self.workdir / f"{self.name}.log", "ab")
        self.processes = [
            subprocess.Popen(self.command(index), env=self.worker_env(), cwd=PROJECT_ROOT,
                             stdout=log, stderr=subprocess.STDOUT)
            for index in range(1, self.variant.processes + 1)]
        self.process = self.processes[0]

    def stop_workers(self):
        for process in getattr(self, "processes", []):
            common.stop_process(process, timeout=60)
        self.processes, self.process = [], None

    def roots(self) -> list[int]:
        return [process.pid for process in getattr(self, "processes", [])]

    def _headers(self) -> dict | None:
        headers = dict(self.variant.headers)
        if headers.pop("RECORDED", None):
            headers[recorded_header()] = True
        return headers or None

    def backlog(self, n):
        self.produce(n)

    def produce(self, n):
        for start in range(0, n, self.batch):
            self.enqueue(task=self.noop, queue=self.queue, headers=self._headers(),
                         kwargs_list=[{"n": i} for i in range(start, min(n, start + self.batch))])

    def teardown(self):
        self.stop_workers()
        use_broker(self.app, "pyamqp://unused//")


# -- memory ------------------------------------------------------------------------
def measure_memory(n: int, log, name: str = "deployed") -> dict:
    """RSS of main_worker as deployed, or of one variant, (parent and pool
    processes) after a warm-up, sampled every ``n // 10`` tasks, and after
    ``n`` tasks."""
    with contextlib.ExitStack() as stack:
        vhost = stack.enter_context(common.throwaway_vhost("bench-main-memory"))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="bench-main-memory-")))
        system = MainVariant(vhost, workdir, BY_NAME[name], stack)
        stack.callback(system.teardown)
        system.setup()
        watcher = QueueWatcher(vhost)
        stack.callback(watcher.close)
        system.activate()
        system.start_workers()
        wait_ready(watcher, system)
        system.produce(min(2000, n))
        watcher.wait_empty(system.queue, 600)
        time.sleep(1)
        main_pid = system.process.pid
        main_before = common.rss_bytes(main_pid)
        memory = rss_over_tasks(system, watcher, n, step=max(1, n // 10), timeout=900, log=log)
        # The main process apart: pool processes are recycled at
        # max_memory_per_child, the main process never is.
        memory["main_before_mb"] = main_before / 2**20
        memory["main_after_mb"] = common.rss_bytes(main_pid) / 2**20
        memory["variant"] = BY_NAME[name].description
        return memory


# -- run and report ------------------------------------------------------------------
def run(names: list[str], *, tasks: int, rounds: int, backlog: int, probe_seconds: float,
        log) -> tuple[list[dict], list[dict]]:
    with contextlib.ExitStack() as stack:
        entries = []
        for name in names:
            vhost = stack.enter_context(common.throwaway_vhost(f"bench-main-{name}"))
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix=f"bench-main-{name}-")))
            system = (CeleryTutorial(vhost, workdir) if name == "celery"
                      else MainVariant(vhost, workdir, BY_NAME[name], stack))
            stack.callback(system.teardown)
            log(f"{name}: {system.description}")
            system.setup()
            watcher = QueueWatcher(vhost)
            stack.callback(watcher.close)
            entries.append((system, watcher, {
                "system": name, "description": system.description, "drain": [], "live": [],
                "cpu_worker_us": [], "cpu_rabbit_us": [], "rss_peak_mb": 0.0,
                "rss_process_mb": 0.0, "sent": [], "executed": [], "failed": []}))
        for round_no in range(1, rounds + 1):
            for system, watcher, result in entries:
                try:
                    measure_round(system, watcher, result, tasks, round_no, log)
                except TimeoutError as error:
                    # A variant too slow for the round's timeout on a loaded
                    # machine: reported as such, the others still measured.
                    log(f"  {system.name} round {round_no}: {error}")
                    result.setdefault("timed_out", []).append(round_no)
                    system.stop_workers()
                    watcher.channel.queue_purge(system.queue)
        overtaking = []
        if backlog:
            # This process reads the probes from the database Django was set up
            # with: the first project variant's.
            first = next((e for e in entries if isinstance(e[0], MainVariant)), None)
            candidates = [e for e in entries if isinstance(e[0], MainVariant)
                          and e[0].variant.overtaking]
            if first is not None and first in candidates:
                for system, watcher, _ in candidates:
                    system.system_env["DATABASE_URL"] = first[0].system_env["DATABASE_URL"]
                    overtaking.append(measure_overtaking(
                        system, watcher, backlog=backlog, seconds=probe_seconds, log=log))
        return [result for _, _, result in entries], overtaking


def render(results: list[dict], overtaking: list[dict], args, memories: list[dict]) -> str:
    import statistics

    by = {r["system"]: r for r in results}
    celery = by.get("celery")
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine {common.machine()} "
        f"(shared with other work: compare rows, not runs); load {common.loadavg()}",
        f"{args.tasks:,} noop tasks per mode, {args.rounds} round(s), round-robin: "
        "median (min-max) tasks/s",
        "",
        "| variant | drain tasks/s | x celery | live tasks/s | x celery | "
        "worker CPU us/task | RabbitMQ CPU us/task | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r["drain"] or not r["live"] or not r["cpu_worker_us"]:
            lines.append(f"| {r['description']} | timed out in round(s) "
                         f"{r.get('timed_out')} | - | - | - | - | - | - |")
            continue
        drain, live = statistics.median(r["drain"]), statistics.median(r["live"])
        ratio = (lambda mode, value: f"{value / statistics.median(celery[mode]):.2f}"
                 if celery and celery[mode] else "-")
        lines.append(
            f"| {r['description']} | {common.fmt_rate(r['drain'])} | {ratio('drain', drain)} | "
            f"{common.fmt_rate(r['live'])} | {ratio('live', live)} | "
            f"{statistics.median(r['cpu_worker_us']):.0f} | "
            f"{statistics.median(r['cpu_rabbit_us']):.0f} | {r['rss_peak_mb']:.0f} |")
    if overtaking:
        lines += ["", "| priority overtaking | priority-1 backlog | backlog tasks started "
                      "before the priority-9 task | of them, started after it was sent | "
                      "its wait s | target (fewer than 10 % before it) |",
                  "|---|---|---|---|---|---|"]
        for row in overtaking:
            met = row["before"] < 0.1 * row["backlog"]
            lines.append(f"| {row['variant']} | {row['backlog']} | {row['before']} | "
                         f"{row['overtook']} | {row['wait_s']:.2f} | "
                         f"{'met' if met else 'NOT met'} |")
    if memories:
        lines += ["", f"| RSS over {memories[0]['tasks']:,} tasks after a warm-up | all processes "
                      "before MiB | after MiB | change (target: within 10 %) | max sampled MiB | "
                      "main process before -> after MiB |",
                  "|---|---|---|---|---|---|"]
        for memory in memories:
            lines.append(f"| {memory['variant']} | {memory['before_mb']:.1f} | "
                         f"{memory['after_mb']:.1f} | {memory['change_pct']:+.1f}% | "
                         f"{memory['max_mb']:.1f} | {memory['main_before_mb']:.1f} -> "
                         f"{memory['main_after_mb']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = ("celery", *BY_NAME)
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per mode and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default=",".join(names),
                        help=f"comma-separated subset of {','.join(names)}")
    parser.add_argument("--backlog", type=int, default=100,
                        help="priority-1 backlog for the overtaking rows (0: skip them)")
    parser.add_argument("--probe-seconds", type=float, default=0.05,
                        help="how long each backlog task runs")
    parser.add_argument("--memory-tasks", type=int, default=0,
                        help="also run this many tasks through main_worker as deployed and "
                             "compare its RSS")
    parser.add_argument("--memory-variants", default="deployed",
                        help="comma-separated variants whose RSS --memory-tasks measures, "
                             "one after the other (e.g. deployed,no-timer-compaction)")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    common.bounded(args.tasks)
    if args.memory_tasks:
        common.bounded(args.memory_tasks)
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    if not 0 <= args.backlog <= 1000 or not 0 <= args.probe_seconds <= 5:
        parser.error("--backlog must be 0-1000 and --probe-seconds 0-5")
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"--only: unknown variant(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(names)}")
    memory_variants = [name.strip() for name in args.memory_variants.split(",") if name.strip()]
    unknown = sorted(set(memory_variants) - set(BY_NAME))
    if unknown or not memory_variants:
        parser.error(f"--memory-variants: unknown or no variant(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(BY_NAME)}")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    # Stopped with SIGTERM: the vhosts, databases and workers are still cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    results, overtaking = run([name for name in names if name in chosen], tasks=args.tasks,
                              rounds=args.rounds, backlog=args.backlog,
                              probe_seconds=args.probe_seconds, log=log)
    memories = [measure_memory(args.memory_tasks, log, name) for name in memory_variants
                ] if args.memory_tasks else []
    print(render(results, overtaking, args, memories))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"results": results, "overtaking": overtaking, "memory": memories, "versions": common.versions(),
             "machine": common.machine(), "tasks": args.tasks, "rounds": args.rounds},
            indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
