#!/usr/bin/env python
"""Scale-out scenarios on the local multi-host test bed (deploy/testbed/testbed.sh).

A 3-node RabbitMQ cluster with quorum queues, worker hosts in network
namespaces (each with its own supervisord), a producer in the root namespace
publishing ``queueworks.core.tasks.probe`` through the failover URL list.  Every
probe records its token once (unique) and counts its deliveries, so:

* executed          distinct tokens whose probe finished
* lost              sent - executed
* duplicated effects  effect rows beyond one per token (the idempotency key
                    keeps this at 0 even when a task runs twice)
* ran twice         tokens whose task body ran more than once (redeliveries
                    absorbed by the idempotent service)

Scenarios:
  1  N tasks across the worker hosts (the split per host is printed)
  2  stop the RabbitMQ node the producer is connected to, mid-run
  3  cut one worker host's network (veth down) mid-run, restore it later
  k  like 2, but the node is killed (SIGKILL to its Erlang VM) instead of stopped
  d  countdown tasks on quorum queues wait in the broker (native delayed delivery)

The test bed driver, the producer and the counting are in bench/cluster_measure.py.

Usage (root):
  .venv/bin/python bench/cluster.py                      # all three, 10,000 tasks each
  .venv/bin/python bench/cluster.py --tasks 500 --scenarios 2 --keep
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.cluster_measure import (  # noqa: E402
    PUBLISHED,
    Result,
    Testbed,
    finished_count,
    host_short,
    measure,
    producer_port,
    publish,
    setup_django,
    wait_finished,
)


def scenario_spread(bed: Testbed, tasks: int, hosts: int = 3, **_) -> Result:
    prefix = f"s1-{uuid.uuid4().hex[:8]}-"
    tokens = [f"{prefix}{i}" for i in range(tasks)]
    started = time.time()
    sent, errors = publish(tokens)
    wait_finished(prefix, sent, stall_timeout=120)
    return measure(f"1. {tasks} tasks, {hosts} worker hosts", prefix, sent, errors, started, [])


def connections_by_port(bed: Testbed, via_node: int) -> dict[str, int]:
    """Client connections per broker port: 'workers' from the namespaces, 'producer' from loopback."""
    counts: Counter = Counter()
    for line in bed.run("ctl", str(via_node), "list_connections", "port", "peer_host").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            who = "producer" if parts[1].startswith("127.") else "workers"
            counts[f"{parts[0]} {who}"] += 1
    return dict(sorted(counts.items()))


def broker_users(bed: Testbed, via_node: int) -> dict[str, list[str]]:
    """The cluster's users and the users of its client connections (no guest:
    testbed.sh deletes it; workers and producer use the project's user)."""
    def column(*args: str) -> list[str]:
        lines = bed.run("ctl", str(via_node), *args, "--silent").splitlines()
        return sorted({line.split()[0] for line in lines if line.strip()})

    return {"users": column("list_users"), "connected": column("list_connections", "user")}


def consuming_workers() -> list[str]:
    from projectname.celery import app

    replies = app.control.inspect(timeout=3.0).active_queues() or {}
    return sorted(node for node, queues in replies.items() if queues)


def scenario_node_down(bed: Testbed, tasks: int, base_port: int, kill: bool = False, **_) -> Result:
    prefix = f"s2-{uuid.uuid4().hex[:8]}-"
    tokens = [f"{prefix}{i}" for i in range(tasks)]
    port = producer_port()
    node = port - base_port
    notes = [f"producer connected to node {node} (port {port}); "
             f"{'killed' if kill else 'stopped'} it after 30% were published, then published the rest"]

    survivor = node % 3 + 1
    before = connections_by_port(bed, survivor)
    workers_before = consuming_workers()

    def on_progress(count):
        # Mid-run: workers are busy with the backlog; the producer goes on
        # publishing through the same (now dead) connection after the stop.
        if count == max(1, tasks * 3 // 10):
            bed.run("node-kill" if kill else "node-stop", str(node))

    started = time.time()
    sent, errors = publish(tokens, on_progress=on_progress)
    final_port = producer_port()
    notes.append(f"producer ended on port {final_port}")
    wait_finished(prefix, sent, stall_timeout=120)
    label = (f"k. kill -9 broker node {node} mid-run" if kill
             else f"2. stop broker node {node} mid-run")
    result = measure(label, prefix, sent, errors, started, notes)
    # Every worker that consumed before the stop consumes again (poll: a worker
    # that just reconnected answers broadcasts once its pidbox is back).
    deadline = time.monotonic() + 60
    workers_after = consuming_workers()
    while not set(workers_before) <= set(workers_after) and time.monotonic() < deadline:
        time.sleep(1)
        workers_after = consuming_workers()
    after = connections_by_port(bed, survivor)
    notes.append(f"connections per broker port before: {before}; after: {after}")
    notes.append(f"workers consuming after: {len(workers_after)} of {len(workers_before)}")
    result.extra.update(producer_port_before=port, producer_port_after=final_port,
                        connections_before=before, connections_after=after,
                        workers_before=workers_before, workers_after=workers_after,
                        broker_users=broker_users(bed, survivor))
    bed.run("node-start", str(node))
    return result


def scenario_host_cut(bed: Testbed, tasks: int, cut_seconds: float, **_) -> Result:
    prefix = f"s3-{uuid.uuid4().hex[:8]}-"
    tokens = [f"{prefix}{i}" for i in range(tasks)]
    host = "h2"
    notes: list[str] = []
    before: dict[str, int] = {}

    def cut_and_restore():
        # Mid-run: once a fifth of the work is done.
        while finished_count(prefix) < tasks // 5:
            time.sleep(0.2)
        before.update(measure("", prefix, 0, 0, time.time(), []).split)
        bed.run("host-cut", host)
        time.sleep(cut_seconds)
        bed.run("host-restore", host)

    cutter = threading.Thread(target=cut_and_restore, daemon=True)
    started = time.time()
    cutter.start()
    sent, errors = publish(tokens)
    cutter.join()
    wait_finished(prefix, sent, stall_timeout=180)
    result = measure(f"3. cut {host}'s network {cut_seconds:.0f}s mid-run", prefix, sent, errors,
                     started, notes)
    during = {name: result.split.get(name, 0) - before.get(name, 0) for name in result.split}
    notes.append(f"done before the cut: {before}; after: {during}")
    return result


def delayed_messages(bed: Testbed) -> int:
    """Messages waiting in Celery's native delayed-delivery queues (celery_delayed_*)."""
    total = 0
    for line in bed.run("ctl", "1", "list_queues", "name", "messages").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("celery_delayed_") and parts[1].isdigit():
            total += int(parts[1])
    return total


def scenario_countdown(bed: Testbed, tasks: int, countdown: float = 8.0, **_) -> Result:
    """ETA/countdown on quorum queues: the broker holds the message, not a worker."""
    from queueworks.core.models import ProbeRun
    from queueworks.core.tasks import probe

    count = min(tasks, 50)
    prefix = f"sd-{uuid.uuid4().hex[:8]}-"
    started = time.time()
    for i in range(count):
        probe.apply_async(args=[f"{prefix}{i}"], countdown=countdown)
        PUBLISHED.append(f"{prefix}{i}")
    # RabbitMQ refreshes queue lengths every few seconds: poll, keep the peak.
    waiting = 0
    while time.time() < started + countdown - 1:
        waiting = max(waiting, delayed_messages(bed))
        if waiting >= count:
            break
        time.sleep(0.5)
    wait_finished(prefix, count, stall_timeout=countdown + 60)
    result = measure(f"d. {count} tasks with countdown={countdown:.0f}s", prefix, count, 0,
                     started, [])
    first = ProbeRun.objects.filter(token__startswith=prefix).order_by("started_at").first()
    early = (first.started_at.timestamp() - started) if first else None
    result.extra.update(delayed_in_broker=waiting, first_start_after=early)
    result.notes.append(f"while waiting, {waiting} messages sat in the broker's "
                        f"celery_delayed_* queues; the first ran {early:.1f}s after publishing"
                        if early is not None else "nothing ran")
    return result


def scenario_node_killed(bed: Testbed, tasks: int, base_port: int, **_) -> Result:
    return scenario_node_down(bed, tasks, base_port, kill=True)


SCENARIOS = {"1": scenario_spread, "2": scenario_node_down, "3": scenario_host_cut,
             "k": scenario_node_killed, "d": scenario_countdown}


def print_table(results: list[Result]) -> None:
    header = ("scenario", "sent", "executed", "lost", "duplicated effects", "ran twice", "time")
    rows = [header] + [
        (r.scenario, str(r.sent), str(r.executed), str(r.lost), str(r.duplicated_effects),
         str(r.ran_twice), f"{r.seconds:.1f}s")
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print()
    for r in results:
        split = ", ".join(f"{host_short(h)} {n}" for h, n in r.split.items())
        print(f"{r.scenario}: split per worker: {split}")
        if r.publish_errors:
            print(f"  publish errors (raised to the caller, not sent): {r.publish_errors}")
        for note in r.notes:
            print(f"  {note}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--scenarios", default="1,2,3")
    parser.add_argument("--cut-seconds", type=float, default=40.0,
                        help="How long scenario 3 keeps the host cut off (default 40 s).")
    parser.add_argument("--tag", default=os.environ.get("TESTBED_TAG", "b"))
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("TESTBED_BASE_PORT", 5700)))
    parser.add_argument("--database-url", default=os.environ.get("TESTBED_DATABASE_URL"),
                        help="Default: a fresh PostgreSQL database on 127.0.0.1:5432 "
                             "(relayed into the namespaces), else SQLite in the state dir.")
    parser.add_argument("--hosts", type=int, default=int(os.environ.get("TESTBED_HOSTS", 3)))
    parser.add_argument("--programs", default=os.environ.get("TESTBED_PROGRAMS", "main_worker,heavy_worker"),
                        help="Programs on every worker host (probe tasks go to main_worker).")
    parser.add_argument("--net", type=int, default=int(os.environ.get("TESTBED_NET", 71)),
                        help="Bridge subnet 169.254.<NET>.0/24.")
    parser.add_argument("--state", default=os.environ.get("TESTBED_STATE"),
                        help="State directory (default run/testbed/state-<tag>).")
    parser.add_argument("--json", dest="json_path", default=None, help="Also write the results here.")
    parser.add_argument("--keep", action="store_true", help="Leave the test bed running.")
    args = parser.parse_args(argv)

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or args.tasks < 10:
        parser.error(f"--scenarios: choose from {','.join(SCENARIOS)} (got {unknown}); "
                     "--tasks must be >= 10")
    if os.geteuid() != 0:
        parser.error("the test bed needs root (network namespaces, veth pairs)")

    env = dict(os.environ, TESTBED_TAG=args.tag, TESTBED_BASE_PORT=str(args.base_port),
               TESTBED_HOSTS=str(args.hosts), TESTBED_PROGRAMS=args.programs,
               TESTBED_NET=str(args.net))
    if args.state:
        env["TESTBED_STATE"] = args.state
    if args.database_url:
        env["TESTBED_DATABASE_URL"] = args.database_url
    bed = Testbed(env)
    try:
        print(f"building the test bed (tag {args.tag}) ...", flush=True)
        t0 = time.monotonic()
        bed.run("up", timeout=600)
        print(f"test bed up in {time.monotonic() - t0:.0f}s", flush=True)
        setup_django(bed.producer_env())
        from projectname.topology import TOPOLOGY

        workers = {worker.name for worker in TOPOLOGY.workers}
        wait_workers(expected_hosts=args.hosts,
                     programs=[p for p in args.programs.split(",") if p in workers])
        results = []
        for key in scenarios:
            print(f"scenario {key} ...", flush=True)
            results.append(SCENARIOS[key](bed, args.tasks, base_port=args.base_port,
                                          cut_seconds=args.cut_seconds, hosts=args.hosts))
        print()
        print_table(results)
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(
                [dict(asdict(r), lost=r.lost) for r in results], indent=2))
        return 0 if all(r.lost == 0 and r.duplicated_effects == 0 for r in results) else 1
    finally:
        if not args.keep:
            bed.run("down", timeout=600)


def wait_workers(expected_hosts: int, programs: list[str], timeout: float = 180) -> None:
    """Until every program on every host consumes (worker names are <program>@hN)."""
    from projectname.celery import app

    expected = {f"{program}@h{i}" for program in programs for i in range(1, expected_hosts + 1)}
    consuming: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.inspect(timeout=2.0).active_queues() or {}
        consuming = {node for node, queues in replies.items() if queues}
        if expected <= consuming:
            return
        time.sleep(1)
    raise TimeoutError(f"workers not consuming after {timeout}s: {sorted(expected - consuming)}")


if __name__ == "__main__":
    raise SystemExit(main())
