"""Django's task API on this project, measured beside the project's own paths,
in one run:

    .venv/bin/python bench/task_backend.py                    # defaults below
    .venv/bin/python bench/task_backend.py --calls 2000 --tasks 20000 --rounds 3

* **Enqueue cost** (one process, SQLite, the local RabbitMQ): the same call of
  the same function, interleaved in rounds,
  - ``task_enqueue``: the project's single fast publish (pooled publisher,
    confirm in the background), no database row;
  - ``outbox``: the Task API's accepted start (``recorded_task_enqueue``):
    the outbox rows in a transaction, then the same publish;
  - ``@task .enqueue()``: Django's task API through queueworks.tasks_backend
    (validation, the outbox rows, the publish, the task_enqueued signal).
* **Drain on the bulk lane** (bench/throughput_systems.py, supervisord running
  the committed bulk_worker_*.conf): the noop written as a Celery task
  (``project``) and as a Django ``@task`` (``django-task``), round-robin.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.throughput_measure import measure_systems  # noqa: E402
from bench.throughput_systems import ProjectDjangoTask  # noqa: E402


def measure_enqueue(calls: int, rounds: int, log=print) -> dict[str, list[float]]:
    """Microseconds per call, per variant and round (median of the round)."""
    with contextlib.ExitStack() as stack:
        vhost = stack.enter_context(common.throwaway_vhost("bench-enqueue"))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-enqueue-")))
        system = ProjectDjangoTask(vhost, workdir)
        stack.callback(system.teardown)
        system.setup()
        from django.db import connection

        from apps.testing.django_tasks import echo
        from queueworks.dispatch.enqueue import task_enqueue
        from queueworks.taskapi.services import recorded_task_enqueue
        from queueworks.tasks_backend.worker import celery_task_for

        app = system.app
        with app.connection_for_write() as conn:
            for queue in app.amqp.queues.values():
                queue(conn.default_channel).declare()
        celery_echo = celery_task_for(app, echo)
        payload = {"order": 42, "items": ["a", "b"]}
        variants = {
            "task_enqueue": lambda: task_enqueue(task=celery_echo, args=[payload],
                                                 queue="main_worker"),
            "outbox": lambda: recorded_task_enqueue(
                task_name=echo.module_path, args=[payload], kwargs={}, queue="main_worker",
                priority=5, run_at=None),
            "@task .enqueue()": lambda: echo.enqueue(payload),
        }
        for fn in variants.values():  # connect, prepare statements, warm caches
            fn()
        results: dict[str, list[float]] = {name: [] for name in variants}
        for round_no in range(1, rounds + 1):
            for name, fn in variants.items():
                times = []
                for _ in range(calls):
                    started = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - started)
                results[name].append(statistics.median(times) * 1e6)
                log(f"  enqueue {name} round {round_no}: median {results[name][-1]:.0f} us")
        connection.close()
        return results


def render(enqueue: dict[str, list[float]], drain: list[dict], args) -> str:
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine {common.machine()}; "
        f"load {common.loadavg()}",
        "versions " + ", ".join(f"{k} {v}" for k, v in common.versions().items()),
        "",
        f"Enqueue: {args.calls} calls per variant and round, {args.rounds} round(s); "
        "median of the round medians (min-max), microseconds per call",
        "",
        "| variant | us/call | x task_enqueue | x outbox |",
        "|---|--:|--:|--:|",
    ]
    base = statistics.median(enqueue["task_enqueue"])
    outbox = statistics.median(enqueue["outbox"])
    for name, values in enqueue.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.0f} ({min(values):.0f}-{max(values):.0f}) | "
                     f"{median / base:.2f} | {median / outbox:.2f} |")
    lines += ["", f"Drain on the bulk lane: {args.tasks:,} noop tasks per round, "
                  f"{args.rounds} round(s), median (min-max) tasks/s", "",
              "| system | drain tasks/s | x Celery task | live tasks/s | executed | failed |",
              "|---|--:|--:|--:|--:|--:|"]
    celery_drain = common.median_range(drain[0]["drain"])[0]
    for row in drain:
        lines.append(f"| {row['description']} | {common.fmt_rate(row['drain'])} | "
                     f"{common.median_range(row['drain'])[0] / celery_drain:.2f} | "
                     f"{common.fmt_rate(row['live'])} | {sum(row['executed'])} | "
                     f"{sum(row['failed'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="enqueue calls per variant/round")
    parser.add_argument("--tasks", type=int, default=20_000, help="noop tasks per drain round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    common.bounded(args.tasks)
    common.bounded(args.calls)
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    enqueue = measure_enqueue(args.calls, args.rounds, log)
    drain = measure_systems(["project", "django-task"], args.tasks, args.rounds, log)
    print(render(enqueue, drain, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
