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

Then (``--windows``) main_worker's enqueue-to-start latency per policy
(and first, with ``--web-policies``, per policy of the web server's
processes, main_worker under ``normal``):
probes sent at ``--rate`` per second for ``--seconds``, in alternating windows
with the web server idle and saturated (``--clients`` threads requesting
``GET /api/v1/tasks/`` back to back); p50/p99 of each condition's pooled
samples and the ratio saturated/idle of the p99s (the target: within 2x).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import operator_token  # noqa: E402
from bench.latency_system import start_system  # noqa: E402

POLICY_ORDER = ("normal", "batch", "idle")
PROBE_TIMEOUT = 120.0


def set_tree_policy(root: int, name: str) -> None:
    """Every thread of every process under ``root`` gets the policy ``name``."""
    from queueworks.core.cpu_policy import POLICIES

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
        "task": "queueworks.core.tasks.probe", "kwargs": {"token": f"cp-{uuid.uuid4().hex[:10]}"}},
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


def measure(system, *, probes: int, hogs: int, windows: int, rate: float, seconds: float,
            clients: int, log, policies=POLICY_ORDER,
            web_policies=("normal",)) -> tuple[list[dict], list[dict]]:
    """First, with main_worker under ``normal``, the start-latency windows for
    each web server policy in ``web_policies`` beyond ``normal`` alone (the
    web program's whole tree switched, then back to ``normal``); then per
    main_worker policy, lowered step by step (normal, batch, idle): the probes
    through the API, then the start-latency windows."""
    import requests

    base = f"http://127.0.0.1:{system.web_port}"
    session = requests.Session()
    token = operator_token()
    session.headers["Authorization"] = f"Token {token}"
    worker = {p["name"]: p["pid"] for p in system.rpc().getAllProcessInfo()}["main_worker"]
    for _ in range(3):  # warm-up: gunicorn imports, pools connect
        probe_seconds(session, base)
    rows, start_rows = [], []
    web = {p["name"]: p["pid"] for p in system.rpc().getAllProcessInfo()}["web"]
    if windows and tuple(web_policies) != ("normal",):
        for web_policy in web_policies:
            set_tree_policy(web, web_policy)
            row = measure_start(base, token, "normal", windows=windows, rate=rate,
                                seconds=seconds, clients=clients, log=log)
            row["web_policy"] = web_policy
            start_rows.append(row)
        set_tree_policy(web, "normal")
    for name in policies:
        set_tree_policy(worker, name)
        quiet = [probe_seconds(session, base) for _ in range(probes)]
        processes = start_hogs(hogs)
        try:
            time.sleep(1.0)  # let the hogs take the cores
            busy = [probe_seconds(session, base) for _ in range(probes)]
        finally:
            for process in processes:
                common.stop_process(process)
        rows.append({"policy": name, "quiet": quiet, "busy": busy})
        log(f"  {name}: quiet {statistics.median(quiet):.3f} s, "
            f"with {hogs} busy processes {statistics.median(busy):.3f} s (max {max(busy):.3f})")
        if windows:
            start_rows.append({**measure_start(base, token, name, windows=windows, rate=rate,
                                               seconds=seconds, clients=clients, log=log),
                               "web_policy": "normal"})
    try:
        # Back to normal before the system stops: a starved SCHED_IDLE worker
        # on a loaded host could outlast the stop's timeout.
        set_tree_policy(worker, "normal")
    except PermissionError:  # unprivileged: idle is a one-way step
        pass
    return rows, start_rows


def saturate_web(base: str, token: str, clients: int, stop: threading.Event,
                 latencies: list | None = None) -> list:
    """``clients`` threads requesting a database-backed API page back to back;
    each request's milliseconds appended to ``latencies`` (when given)."""
    import requests

    counts = [0] * clients

    def client(index: int):
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        while not stop.is_set():
            started = time.perf_counter()
            session.get(f"{base}/api/v1/tasks/", timeout=30)
            if latencies is not None:
                latencies.append((time.perf_counter() - started) * 1000)
            counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    return threads + [counts]


def measure_start(base: str, token: str, name: str, *, windows: int, rate: float,
                  seconds: float, clients: int, log) -> dict:
    from bench.common import percentile
    from bench.latency_start import probe_window

    timeout = 60 + seconds * 4
    idle, busy, requests_per_s, starved, web_ms = [], [], [], None, []
    for _ in range(windows):
        try:
            idle += probe_window(rate=rate, seconds=seconds, timeout=timeout)
        except TimeoutError as error:
            starved = f"web idle: {error}"
            requests_per_s.append(0.0)
            break
        stop = threading.Event()
        warm_up: list = []
        *threads, counts = saturate_web(base, token, clients, stop, warm_up)
        time.sleep(1.0)  # the web workers busy before the first probe
        started, before, skipped = time.perf_counter(), sum(counts), len(warm_up)
        try:
            busy += probe_window(rate=rate, seconds=seconds, timeout=timeout)
        except TimeoutError as error:
            # Starved: the probes did not all start while the web was busy.
            starved = f"web saturated: {error}"
        requests_per_s.append((sum(counts) - before) / (time.perf_counter() - started))
        web_ms += warm_up[skipped:]
        stop.set()
        for thread in threads:
            thread.join(35)
        if starved:
            break
    row = {"policy": name, "idle": idle, "busy": busy, "starved": starved,
           "requests_per_s": statistics.median(requests_per_s), "web_ms": web_ms}
    if starved:
        log(f"  {name}: {starved}")
        return row
    log(f"  {name}: task start p50/p99 web idle {percentile(idle, 50):.1f}/"
        f"{percentile(idle, 99):.1f} ms, web saturated {percentile(busy, 50):.1f}/"
        f"{percentile(busy, 99):.1f} ms ({row['requests_per_s']:.0f} req/s)")
    return row


def render_start(rows: list[dict], *, windows: int, rate: float, seconds: float,
                 clients: int) -> str:
    from bench.common import percentile

    lines = [
        f"# main_worker enqueue-to-start per policy: {windows} pair(s) of {seconds:g} s windows "
        f"at {rate:g} probes/s, web idle then saturated by {clients} clients "
        "(GET /api/v1/tasks/)",
        "",
        "| main_worker policy | web server policy | start p50 / p99 ms, web idle | start p50 / "
        "p99 ms, web saturated | p99 saturated / idle | web requests/s while saturated | web "
        "request p50 / p99 ms while saturated |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row.get("starved"):
            idle = (f"{percentile(row['idle'], 50):.1f} / {percentile(row['idle'], 99):.1f}"
                    if row["idle"] else "-")
            lines.append(f"| {row['policy']} | {row['web_policy']} | {idle} | starved "
                         f"({row['starved']}) | - | {row['requests_per_s']:.0f} | - |")
            continue
        idle99, busy99 = percentile(row["idle"], 99), percentile(row["busy"], 99)
        web = (f"{percentile(row['web_ms'], 50):.1f} / {percentile(row['web_ms'], 99):.1f}"
               if row["web_ms"] else "-")
        lines.append(
            f"| {row['policy']} | {row['web_policy']} | {percentile(row['idle'], 50):.1f} / "
            f"{idle99:.1f} | {percentile(row['busy'], 50):.1f} / {busy99:.1f} | "
            f"{busy99 / idle99:.2f}x | {row['requests_per_s']:.0f} | {web} |")
    return "\n".join(lines)


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
    parser.add_argument("--windows", type=int, default=2,
                        help="pairs of start-latency windows per policy (0: skip)")
    parser.add_argument("--rate", type=float, default=20.0, help="probes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--clients", type=int, default=8, help="web client threads")
    parser.add_argument("--policies", default=",".join(POLICY_ORDER),
                        help="comma-separated subset of normal,batch,idle (measured in that "
                             "order)")
    parser.add_argument("--web-policies", default="normal",
                        help="comma-separated web server policies to measure the start "
                             "windows under first, main_worker under normal (e.g. normal,batch)")
    args = parser.parse_args(argv)
    web_policies = [name.strip() for name in args.web_policies.split(",") if name.strip()]
    if not web_policies or set(web_policies) - set(POLICY_ORDER):
        parser.error(f"--web-policies: choose from {','.join(POLICY_ORDER)} "
                     f"(got {args.web_policies!r})")
    chosen = {name.strip() for name in args.policies.split(",") if name.strip()}
    if not chosen or chosen - set(POLICY_ORDER):
        parser.error(f"--policies: choose from {','.join(POLICY_ORDER)} "
                     f"(got {args.policies!r})")
    if not 0 <= args.windows <= 10 or not 0.5 <= args.rate <= 200 \
            or not 1 <= args.seconds <= 120 or not 1 <= args.clients <= 64:
        parser.error("--windows 0-10, --rate 0.5-200, --seconds 1-120, --clients 1-64")
    if not 1 <= args.probes <= 100:
        parser.error("--probes must be between 1 and 100")
    if not 1 <= args.hogs <= 16:
        parser.error("--hogs must be between 1 and 16")
    if not hasattr(os, "sched_setscheduler"):
        parser.error("scheduling policies are Linux's")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    # Stopped with SIGTERM: the system and its vhost are still cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with common.throwaway_vhost("bench-cpu-policy") as vhost, \
            tempfile.TemporaryDirectory(prefix="bench-cpu-policy-") as workdir:
        log("starting the system (supervisord, committed deploy/conf.d) ...")
        system = start_system(Path(workdir), vhost)
        try:
            rows, start_rows = measure(system, probes=args.probes, hogs=args.hogs,
                                       windows=args.windows, rate=args.rate,
                                       seconds=args.seconds, clients=args.clients, log=log,
                                       policies=[p for p in POLICY_ORDER if p in chosen],
                                       web_policies=web_policies)
        finally:
            system.stop()
    print(render(rows, probes=args.probes, hogs=args.hogs))
    if start_rows:
        print()
        print(render_start(start_rows, windows=args.windows, rate=args.rate,
                           seconds=args.seconds, clients=args.clients))
    return 0


if __name__ == "__main__":
    sys.exit(main())
