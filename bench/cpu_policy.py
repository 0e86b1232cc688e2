"""What a worker's CPU scheduling policy costs a user-facing task on a busy host.

    .venv/bin/python bench/cpu_policy.py                # 5 probes per row
    .venv/bin/python bench/cpu_policy.py --probes 10 --hogs 2

Starts the whole system as deployed (supervisord from the committed
deploy/conf.d files) in a throw-away vhost, then for each policy, in the order
normal, batch, idle (an unprivileged process may lower its policy, never raise
it back from idle), gives main_worker's whole process tree (prefork parent,
pool children, every thread) that policy and times probes sent through the
Task API (``POST /api/v1/tasks/``, then ``GET`` its status until SUCCESS):

* with the host otherwise quiet;
* while ``--hogs`` CPU-bound processes of normal priority run (what a cron
  job, a backup or a busy neighbour does to the host).

Under SCHED_IDLE the worker only gets what the normal processes leave, so the
second condition shows starvation; normal and batch keep a fair share.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.latency import operator_token, start_system  # noqa: E402

POLICY_ORDER = ("normal", "batch", "idle")
PROBE_TIMEOUT = 120.0


def set_tree_policy(root: int, name: str) -> None:
    """Every thread of every process under ``root`` gets the policy ``name``."""
    from apps.core.cpu_policy import POLICIES

    for pid in common.tree(root):
        try:
            threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in threads:
            try:
                os.sched_setscheduler(tid, POLICIES[name], os.sched_param(0))
            except ProcessLookupError:
                continue


def start_hogs(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(count)]


def probe_seconds(session, base: str) -> float:
    """Seconds from the Task API request to the probe's SUCCESS seen through the API."""
    started = time.perf_counter()
    response = session.post(f"{base}/api/v1/tasks/", json={
        "task": "apps.core.tasks.probe", "kwargs": {"token": f"cp-{uuid.uuid4().hex[:10]}"}},
        timeout=PROBE_TIMEOUT)
    response.raise_for_status()
    status_url = response.json()["status_url"]
    while time.perf_counter() - started < PROBE_TIMEOUT:
        state = session.get(status_url, timeout=PROBE_TIMEOUT).json().get("state")
        if state == "SUCCESS":
            return time.perf_counter() - started
        if state in ("FAILURE", "REVOKED"):
            raise RuntimeError(f"probe ended {state}")
        time.sleep(0.01)
    raise TimeoutError(f"probe not done after {PROBE_TIMEOUT}s")


def measure(system, *, probes: int, hogs: int, log) -> list[dict]:
    import requests

    base = f"http://127.0.0.1:{system.web_port}"
    session = requests.Session()
    session.headers["Authorization"] = f"Token {operator_token()}"
    worker = {p["name"]: p["pid"] for p in system.rpc().getAllProcessInfo()}["main_worker"]
    for _ in range(3):  # warm-up: gunicorn imports, pools connect
        probe_seconds(session, base)
    rows = []
    for name in POLICY_ORDER:
        set_tree_policy(worker, name)
        row = {"policy": name}
        quiet = [probe_seconds(session, base) for _ in range(probes)]
        processes = start_hogs(hogs)
        try:
            time.sleep(1.0)  # let the hogs take the cores
            busy = [probe_seconds(session, base) for _ in range(probes)]
        finally:
            for process in processes:
                common.stop_process(process)
        row.update(quiet=quiet, busy=busy)
        log(f"  {name}: quiet {statistics.median(quiet):.3f} s, "
            f"with {hogs} busy processes {statistics.median(busy):.3f} s (max {max(busy):.3f})")
        rows.append(row)
    return rows


def render(rows: list[dict], *, probes: int, hogs: int) -> str:
    lines = [
        f"# main_worker CPU policy: probe through the Task API, request to SUCCESS "
        f"({probes} probes per cell, sequential)",
        f"# {common.machine()}; load average at the end {common.loadavg()}",
        "",
        f"| main_worker policy | quiet host: median / max s | {hogs} CPU-bound normal "
        "processes: median / max s | slowdown (median) |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        quiet, busy = statistics.median(row["quiet"]), statistics.median(row["busy"])
        lines.append(f"| {row['policy']} | {quiet:.3f} / {max(row['quiet']):.3f} | "
                     f"{busy:.3f} / {max(row['busy']):.3f} | {busy / quiet:.1f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=5, help="probes per cell")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2,
                        help="CPU-bound processes of normal priority (default: one per core)")
    args = parser.parse_args(argv)
    if not 1 <= args.probes <= 100:
        parser.error("--probes must be between 1 and 100")
    if not 1 <= args.hogs <= 16:
        parser.error("--hogs must be between 1 and 16")
    if not hasattr(os, "sched_setscheduler"):
        parser.error("scheduling policies are Linux's")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    with common.throwaway_vhost("bench-cpu-policy") as vhost, \
            tempfile.TemporaryDirectory(prefix="bench-cpu-policy-") as workdir:
        log("starting the system (supervisord, committed deploy/conf.d) ...")
        system = start_system(Path(workdir), vhost)
        try:
            rows = measure(system, probes=args.probes, hogs=args.hogs, log=log)
        finally:
            system.stop()
    print(render(rows, probes=args.probes, hogs=args.hogs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
