"""The bulk enqueue's producer-side pieces measured alone, side by side in one run.

    .venv/bin/python bench/producer_pieces.py --tasks 20000 --rounds 5

The project's ``tasks_enqueue_bulk`` publishes one batch of N noop tasks to
the ``bulk`` queue (persistent, streamed publisher confirms) once with every
piece on and once for each producer piece switched off alone
(``DISPATCH_FAST_PATHS_OFF``, queueworks/dispatch/switches.py, read by the
producer at enqueue time, so this process sets it before each batch).  The
limit is raw py-amqp publishing the same Celery messages (built beforehand
by the all-on builder, as bench/throughput.py's producer table does) to the
same queue with streamed confirms.  Variants take turns within every round,
starting one further each round, so a noisy minute on a shared machine hits
all of them alike.  Only RabbitMQ is needed (a throw-away vhost, no
workers); the queue is purged before every batch.  A piece's gain is how
much faster the bulk enqueue is with it than without it (all-on / piece-off - 1).
The producer's CPU time per task (this process; for the raw variant the
publish only) is printed too: on a shared machine it varies far less than
the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

ENV = "DISPATCH_FAST_PATHS_OFF"
# queueworks/dispatch/switches.py PRODUCER_PIECES (not imported: that needs Django set up first).
PIECES = ("message_slimming", "batched_frames")
QUEUE = "bulk"
RAW = "raw py-amqp, same messages prebuilt, confirms streamed"


def setup_django(vhost: str):
    from tests.support import rabbit

    os.environ.update(CELERY_BROKER_URL=rabbit.broker_url(vhost),
                      DJANGO_SETTINGS_MODULE="projectname.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    # The benchmark's task lives in the test-only app (apps/testing).
    os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
    os.environ.setdefault("DJANGO_PROFILE", "development")
    import django

    django.setup()


def project_enqueue(off: str, kwargs_list: list[dict]) -> tuple[float, float]:
    """Wall and CPU seconds of one ``tasks_enqueue_bulk`` of ``kwargs_list`` with
    ``off`` switched off."""
    from queueworks.dispatch.services import tasks_enqueue_bulk
    from apps.testing.tasks import noop

    os.environ[ENV] = off
    try:
        started, started_cpu = time.perf_counter(), time.process_time()
        tasks_enqueue_bulk(task=noop, kwargs_list=kwargs_list, queue=QUEUE)
        return time.perf_counter() - started, time.process_time() - started_cpu
    finally:
        os.environ.pop(ENV, None)


def raw_messages(n: int) -> list:
    """The all-on bulk enqueue's messages for n noop calls, built beforehand."""
    from queueworks.dispatch.services import _MessageBuilder
    from apps.testing.tasks import noop
    from projectname.celery import app

    os.environ.pop(ENV, None)
    build = _MessageBuilder(app, noop, app.conf.task_default_priority)
    return [build(str(uuid.uuid4()), {"n": i}) for i in range(n)]


def raw_publish(vhost: str, messages: list) -> tuple[float, float]:
    """Wall and CPU seconds of py-amqp's own ``basic_publish`` of ``messages``,
    confirms streamed."""
    conn = common.amqp_connection(vhost)
    try:
        channel = conn.channel()
        channel.queue_declare(QUEUE, passive=True)  # declared by the warm-up batch
        channel.confirm_select()
        acked = [0]

        def on_ack(tag, multiple):
            acked[0] = tag if multiple else acked[0] + 1

        channel.events["basic_ack"].add(on_ack)
        started, started_cpu = time.perf_counter(), time.process_time()
        for message in messages:
            channel.basic_publish(message, exchange="", routing_key=QUEUE)
        while acked[0] < len(messages):
            conn.drain_events(timeout=30)
        return time.perf_counter() - started, time.process_time() - started_cpu
    finally:
        conn.close()


def settle(vhost: str) -> int:
    """How many messages the queue holds; then empties it for the next batch."""
    conn = common.amqp_connection(vhost)
    try:
        channel = conn.channel()
        depth = channel.queue_declare(QUEUE, passive=True).message_count
        channel.queue_purge(QUEUE)
        return depth
    finally:
        conn.close()


def measure(vhost: str, off: str | None, kwargs_list: list[dict], log,
            attempts: int = 3) -> tuple[float, float, int]:
    """(wall s, CPU s, messages queued) of one batch; ``off`` None: the raw publish.

    The broker is shared: a batch cut off by someone else's fault (a closed
    connection) is logged and measured again, from an empty queue."""
    from amqp.exceptions import AMQPError

    from queueworks.dispatch.confirms import BulkEnqueueError

    for attempt in range(1, attempts + 1):
        try:
            if off is None:
                seconds, cpu = raw_publish(vhost, raw_messages(len(kwargs_list)))
            else:
                seconds, cpu = project_enqueue(off, kwargs_list)
        except (BulkEnqueueError, AMQPError, OSError) as exc:
            if attempt == attempts:
                raise
            log(f"  batch failed ({exc.__class__.__name__}: {exc}); measuring it again")
            settle(vhost)
            continue
        # Every confirmed message is on the queue: the batch was sent whole.
        return seconds, cpu, settle(vhost)
    raise AssertionError("unreachable")


def render(rows: dict[str, dict], args, loads: list[str]) -> str:
    rate = {label: common.median_range(row["rate"])[0] for label, row in rows.items()}
    raw = rate.get(RAW)
    base = rate["all on"]
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"machine {common.machine()}; load {loads[0]} (start), {loads[-1]} (end)",
        f"{args.tasks:,} noop tasks per batch to the bulk queue, {args.rounds} round(s), "
        "variants interleaved: median (min-max)",
        "",
        "| variant | tasks/s | x raw | piece's gain | producer CPU us/task |",
        "|---|---|---|---|---|",
    ]
    for label, row in rows.items():
        ratio = "-" if raw is None else f"{rate[label] / raw:.2f}"
        if label.endswith(" off"):
            gain = f"{base / rate[label] - 1:+.1%}"
        else:
            gain = "-"
        cpu = common.median_range(row["cpu_us"])[0]
        lines.append(f"| {label} | {common.fmt_rate(row['rate'])} | {ratio} | {gain} | "
                     f"{cpu:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per batch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pieces", default=",".join(PIECES),
                        help=f"comma-separated subset of {','.join(PIECES)}")
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args(argv)
    common.bounded(args.tasks)
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    pieces = common.pieces_option(parser, args.pieces, PIECES)
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    loads = [common.loadavg()]
    with common.throwaway_vhost("bench-producer-pieces") as vhost:
        setup_django(vhost)
        kwargs_list = [{"n": i} for i in range(args.tasks)]
        variants = {"all on": "", **{f"{piece} off": piece for piece in pieces}, RAW: None}
        rows = {label: {"rate": [], "cpu_us": [], "queued": []} for label in variants}
        # Warm-up: the pooled connection, its confirm channel, the declared queue.
        project_enqueue("", [{"n": 0}])
        settle(vhost)
        labels = list(variants)
        for round_no in range(args.rounds):
            shift = round_no % len(labels)
            for label in labels[shift:] + labels[:shift]:
                seconds, cpu, queued = measure(vhost, variants[label], kwargs_list, log)
                rows[label]["rate"].append(args.tasks / seconds)
                rows[label]["queued"].append(queued)
                rows[label]["cpu_us"].append(1e6 * cpu / args.tasks)
                loads.append(common.loadavg())
                log(f"  round {round_no + 1} {label}: {args.tasks / seconds:,.0f} tasks/s, "
                    f"{1e6 * cpu / args.tasks:.0f} us CPU/task, {queued} queued "
                    f"(load {loads[-1]})")
    print(render(rows, args, loads))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"tasks": args.tasks, "rounds": args.rounds, "loads": loads,
             "results": [{"variant": label, **row} for label, row in rows.items()]},
            indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
