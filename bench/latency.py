"""Enqueue cost from a real Django view, and enqueue-to-start latency per queue.

    .venv/bin/python bench/latency.py                       # defaults below
    .venv/bin/python bench/latency.py --requests 200 --concurrency 4 --seconds 3

Starts the whole system as deployed (supervisord from the committed
deploy/conf.d files: gunicorn web, every worker program, beat, flower) in a
throw-away RabbitMQ vhost with a temporary SQLite database, then measures:

1. HTTP (loopback only, a bounded number of requests from ``--concurrency``
   client threads): p50/p99 of
   * ``GET /health/`` (the HTTP baseline, no enqueue),
   * ``POST /api/v1/tasks/bulk/`` with one task, and the view's own enqueue
     time from its ``Server-Timing: enqueue;dur=`` header (pooled connection,
     publish, confirm: the time the enqueue adds to the request),
   * ``POST /api/v1/tasks/bulk/`` with 100 tasks (per request and per task),
   * ``POST /api/v1/tasks/`` (the Task API's single start: the pooled
     publisher, ``Server-Timing`` start, enqueue and the enqueue's CPU
     time), with ``--concurrency``
     clients, with 2 (as many as gunicorn workers), and with 1 client paced
     at ``PACED_RATE`` requests per second (a steady load that leaves the
     cores some idle time).
   Then one enqueue timed inside this process: ``task_enqueue()`` (pooled
   publisher, confirm in the background) against ``apply_async()`` (a confirm
   wait per message), wall and CPU time, with a CPU-only control timed
   between the calls (what waiting for a core adds to any code).
2. Enqueue-to-start: probe tasks sent at ``--rate`` per second for
   ``--seconds`` to each queue; latency = the worker's recorded start time
   minus the send time (same host clock), p50/p99 per queue; then the same on
   ``main_worker`` in ``--pairs`` alternating windows with ``heavy`` idle and
   with ``heavy`` holding a backlog of long tasks (the isolation ratio
   compares the two conditions' pooled samples).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import PROJECT_ROOT  # noqa: E402

MAX_REQUESTS = 20_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def p50_p99(values: list[float] | None, digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 50):.{digits}f} / {percentile(values, 99):.{digits}f}"


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return (f"p50 {percentile(values, 50):.2f} ms, p99 {percentile(values, 99):.2f} ms "
            f"(n={len(values)})")


# -- system ------------------------------------------------------------------------
def start_system(workdir: Path, vhost: str):
    import subprocess

    from tests.support.live import LiveSystem, build_env, free_port

    run_dir = workdir / "system"
    (run_dir / "log").mkdir(parents=True)
    broker_url = common.rabbit.broker_url(vhost)
    database_url = f"sqlite:///{workdir / 'latency.sqlite3'}"
    web_port, flower_port = free_port(), free_port()
    env = build_env(run_dir=run_dir, broker_url=broker_url, database_url=database_url,
                    web_port=web_port, flower_port=flower_port)
    # A load generator is one user sending far more than the per-user
    # throttles allow (apps/taskapi/throttles.py): measure latency, not 429s.
    env.update({f"TASKAPI_THROTTLE_{scope}": "1000000/min"
                for scope in ("START", "BULK", "READS", "ANON")})
    # This process enqueues and reads the database like the web process does.
    for key in ("CELERY_BROKER_URL", "DATABASE_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY"):
        os.environ[key] = env[key]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   env=env, cwd=PROJECT_ROOT, check=True)
    import django

    django.setup()
    from projectname.celery import app

    app.conf.broker_url = broker_url
    system = LiveSystem(run_dir=run_dir, vhost=vhost, broker_url=broker_url,
                        database_url=database_url, env=env, web_port=web_port,
                        flower_port=flower_port)
    system.start()
    return system


def operator_token() -> str:
    from django.contrib.auth.models import Group, Permission, User
    from rest_framework.authtoken.models import Token

    user = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}")
    group, _ = Group.objects.get_or_create(name="task operators")
    group.permissions.add(Permission.objects.get(content_type__app_label="taskapi",
                                                 codename="operate_tasks"))
    user.groups.add(group)
    return Token.objects.create(user=user).key


# -- 1. HTTP -------------------------------------------------------------------------
# Requests per second of the paced Task API row.
PACED_RATE = 50


def http_load(url: str, *, method: str, body_for, headers: dict, total: int,
              concurrency: int, interval: float = 0.0) -> dict:
    """``total`` requests from ``concurrency`` threads; latencies in ms.

    ``interval`` (seconds) paces each client: a request starts at most every
    ``interval`` (a steady, bounded load instead of as fast as possible)."""
    import requests

    latencies: list[float] = []
    server: list[float] = []
    server_cpu: list[float] = []
    whole: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def client():
        session = requests.Session()
        session.headers.update(headers)
        next_at = time.perf_counter()
        while True:
            with lock:
                number = next(counter, None)
            if number is None:
                return
            body = body_for(number) if body_for else None
            if interval:
                time.sleep(max(0.0, next_at - time.perf_counter()))
                next_at = max(next_at + interval, time.perf_counter())
            started = time.perf_counter()
            response = session.request(method, url, json=body, timeout=30)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if response.status_code >= 400:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                latencies.append(elapsed)
                timing = server_timing(response.headers.get("Server-Timing", ""))
                for name, values in (("enqueue", server), ("enqueue-cpu", server_cpu),
                                     ("start", whole)):
                    if name in timing:
                        values.append(timing[name])

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} of {total} requests to {url} failed: {failures[0]}")
    return {"client_ms": latencies, "enqueue_ms": server, "enqueue_cpu_ms": server_cpu,
            "start_ms": whole, "requests_per_s": total / wall}


def server_timing(header: str) -> dict[str, float]:
    """``"start;dur=1.2, enqueue;dur=0.5"`` -> ``{"start": 1.2, "enqueue": 0.5}``."""
    timings = {}
    for metric in header.split(","):
        name, _, duration = metric.strip().partition(";dur=")
        if name and duration:
            timings[name] = float(duration)
    return timings


def measure_http(system, *, requests_total: int, concurrency: int, log) -> list[dict]:
    base = f"http://127.0.0.1:{system.web_port}"
    headers = {"Authorization": f"Token {operator_token()}"}
    probe = "apps.core.tasks.probe"
    run_id = uuid.uuid4().hex[:6]
    bulk_size = 100
    cases = [
        ("GET /health/ (baseline, no enqueue)", "GET", "/health/", None, requests_total),
        ("POST /api/v1/tasks/bulk/, 1 task", "POST", "/api/v1/tasks/bulk/",
         lambda n: {"task": probe, "kwargs_list": [{"token": f"h1-{run_id}-{n}"}]},
         requests_total),
        (f"POST /api/v1/tasks/bulk/, {bulk_size} tasks", "POST", "/api/v1/tasks/bulk/",
         lambda n: {"task": probe, "kwargs_list": [{"token": f"hb-{run_id}-{n}-{i}"}
                                                  for i in range(bulk_size)]},
         max(1, requests_total // 10)),
        ("POST /api/v1/tasks/ (Task API single start)", "POST", "/api/v1/tasks/",
         lambda n: {"task": probe, "kwargs": {"token": f"ts-{run_id}-{n}"}}, requests_total),
        # As many clients as gunicorn workers: the view's own cost without
        # requests queueing for a worker on an oversubscribed machine.
        ("POST /api/v1/tasks/ (Task API single start), 2 clients", "POST", "/api/v1/tasks/",
         lambda n: {"task": probe, "kwargs": {"token": f"t2-{run_id}-{n}"}}, requests_total),
        # A steady moderate load (the system is not saturated): what a request
        # pays for its enqueue when the cores are not all busy.
        (f"POST /api/v1/tasks/ (Task API single start), 1 client at {PACED_RATE} req/s",
         "POST", "/api/v1/tasks/",
         lambda n: {"task": probe, "kwargs": {"token": f"tp-{run_id}-{n}"}}, requests_total),
    ]
    rows = []
    for label, method, path, body_for, total in cases:
        # A short warm-up: gunicorn workers import, pools connect.
        paced = label.endswith(f"at {PACED_RATE} req/s")
        clients = 2 if label.endswith("2 clients") else 1 if paced else concurrency
        interval = 1.0 / PACED_RATE if paced else 0.0
        http_load(base + path, method=method, body_for=(lambda n, f=body_for: f(n + 10**6))
                  if body_for else None, headers=headers, total=min(40, total),
                  concurrency=clients)
        result = http_load(base + path, method=method, body_for=body_for, headers=headers,
                           total=total, concurrency=clients, interval=interval)
        result.update(label=label, requests=total, tasks_per_request=bulk_size
                      if f"{bulk_size} tasks" in label else (0 if method == "GET" else 1))
        rows.append(result)
        log(f"  {label}: client {summary(result['client_ms'])}"
            + (f"; enqueue (Server-Timing) {summary(result['enqueue_ms'])}"
               if result["enqueue_ms"] else "")
            + f"; {result['requests_per_s']:.0f} req/s")
    return rows


# Iterations of the control loop: pure-Python arithmetic, no I/O and no
# allocation to speak of, about as long as one task_enqueue() call here.
CONTROL_ITERATIONS = 8_000


def control_work() -> int:
    total = 0
    for number in range(CONTROL_ITERATIONS):
        total += number
    return total


def measure_enqueue(*, count: int, log) -> list[dict]:
    """One task per call, as a view would: the pooled publisher (confirm in the
    background) and Celery's own apply_async (a confirm wait per message).

    Each call's CPU time (``time.thread_time``) is kept next to its wall time,
    and a control (``control_work``, fixed CPU-only work) is timed between the
    ``task_enqueue`` calls under the same load: its tail is what waiting for a
    core adds to any code in this process, whatever it does.
    """
    from apps.core.tasks import probe
    from apps.dispatch.services import task_enqueue

    def clock(work, row: dict) -> None:
        """Run ``work()``; its wall and thread CPU time (ms) go to ``row``."""
        started, started_cpu = time.perf_counter(), time.thread_time()
        work()
        row["cpu_ms"].append((time.thread_time() - started_cpu) * 1000)
        row["ms"].append((time.perf_counter() - started) * 1000)

    def timed(call, control: dict | None = None) -> dict:
        for number in range(20):  # connect and warm up
            call(f"warm-{number}")
        row = {"ms": [], "cpu_ms": []}
        for number in range(count):
            token = f"e-{uuid.uuid4().hex[:8]}-{number}"
            clock(lambda: call(token), row)
            time.sleep(0.001)
            if control is not None:
                clock(control_work, control)
            time.sleep(0.001)
        return row

    control = {"label": f"control: {CONTROL_ITERATIONS:,} additions in a Python loop, between "
                        "the task_enqueue() calls (no I/O)", "ms": [], "cpu_ms": []}
    rows = [
        {"label": "task_enqueue() (pooled publisher, confirm in the background)",
         **timed(lambda token: task_enqueue(task=probe, kwargs={"token": token}), control)},
        control,
        {"label": "probe.apply_async() (Celery producer, confirm wait per message)",
         **timed(lambda token: probe.apply_async(kwargs={"token": token}))},
    ]
    for row in rows:
        log(f"  {row['label']}: {summary(row['ms'])}; CPU {summary(row['cpu_ms'])}")
    return rows


# -- 2. enqueue-to-start -----------------------------------------------------------------
def send_paced(*, task, rate: float, seconds: float, queue: str | None, extra: dict) -> dict:
    """Send ``rate`` tasks per second for ``seconds``; token -> send time (epoch s)."""
    sent: dict[str, float] = {}
    total = max(1, int(rate * seconds))
    started = time.monotonic()
    for number in range(total):
        due = started + number / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        token = f"lat-{uuid.uuid4().hex[:10]}"
        options = {"queue": queue} if queue else {}
        sent[token] = time.time()
        task.apply_async(kwargs={"token": token, **extra}, **options)
    return sent


def start_latencies(sent: dict[str, float], timeout: float) -> list[float]:
    from apps.core.models import ProbeRun

    deadline = time.monotonic() + timeout
    while True:
        rows = dict(ProbeRun.objects.filter(token__in=list(sent), started_at__isnull=False)
                    .values_list("token", "started_at"))
        if len(rows) == len(sent):
            return [(rows[token].timestamp() - sent[token]) * 1000 for token in sent]
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(rows)} of {len(sent)} probes started in {timeout}s")
        time.sleep(0.5)


def probe_window(*, rate: float, seconds: float, timeout: float, task=None,
                 queue: str | None = None, extra: dict | None = None) -> list[float]:
    """Send ``task`` (default: probe) at ``rate`` for ``seconds``; start latencies in ms."""
    from apps.core.tasks import probe

    return start_latencies(send_paced(task=task or probe, rate=rate, seconds=seconds,
                                      queue=queue, extra=extra or {}), timeout)


def measure_start_latency(system, *, rate: float, seconds: float, backlog: int,
                          backlog_seconds: float, pairs: int, log) -> list[dict]:
    from apps.core.tasks import heavy_probe, probe

    rows = []
    timeout = 60 + seconds * 4
    watcher = common.QueueWatcher(system.vhost)
    for label, task, queue, extra, task_rate in (
        ("main_worker (probe)", probe, None, {}, rate),
        ("celery (probe, sent to the default queue)", probe, "celery", {}, rate),
        ("heavy (heavy_probe, 0 s)", heavy_probe, None, {"seconds": 0}, max(1.0, rate / 4)),
    ):
        wait_idle(watcher)
        latencies = probe_window(task=task, rate=task_rate, seconds=seconds, timeout=timeout,
                                 queue=queue, extra=extra)
        rows.append({"label": label, "rate": task_rate, "ms": latencies})
        log(f"  {label} at {task_rate:g}/s: {summary(latencies)}")
    rows += measure_isolation(watcher, rate=rate, seconds=seconds, backlog=backlog,
                              backlog_seconds=backlog_seconds, pairs=pairs, timeout=timeout,
                              log=log)
    watcher.close()
    return rows


def measure_isolation(watcher, *, rate: float, seconds: float, backlog: int,
                      backlog_seconds: float, pairs: int, timeout: float, log) -> list[dict]:
    """main_worker's enqueue-to-start with ``heavy`` idle and while it holds a
    backlog of long tasks, in ``pairs`` alternating windows (idle, backlog,
    idle, backlog, ...): a noisy minute on this shared machine then hits both
    conditions, and each pools ``pairs`` times the samples of one window."""
    from apps.core.tasks import heavy_probe

    def window(row: dict) -> list[float]:
        latencies = probe_window(rate=rate, seconds=seconds, timeout=timeout)
        row["ms"] += latencies
        row["window_p99"].append(percentile(latencies, 99))
        return latencies

    idle = {"label": f"main_worker (probe), heavy idle ({pairs} windows)", "rate": rate,
            "ms": [], "window_p99": [], "isolation": "idle"}
    loaded = {"label": f"main_worker while heavy holds a backlog of {backlog} x "
                       f"{backlog_seconds:g} s tasks ({pairs} windows)", "rate": rate,
              "ms": [], "window_p99": [], "heavy_depth": [], "isolation": "backlog"}
    for pair in range(1, pairs + 1):
        wait_idle(watcher)
        log(f"  window {pair}, heavy idle: {summary(window(idle))}")
        holders = [f"hold-{uuid.uuid4().hex[:10]}" for _ in range(backlog)]
        for token in holders:
            heavy_probe.apply_async(kwargs={"token": token, "seconds": backlog_seconds})
        time.sleep(1)
        depth = watcher.depth("heavy")  # ready messages (the management API lags seconds)
        loaded["heavy_depth"].append(depth)
        log(f"  window {pair}, heavy backlog (depth ~{depth}): {summary(window(loaded))}")
        # Drop what still waits; let the started ones (and any message the
        # worker had prefetched) finish, so the next idle window is idle.
        purged = watcher.channel.queue_purge("heavy") or 0
        wait_finished(holders, len(holders) - purged, timeout=backlog_seconds * 4 + 30)
    return [idle, loaded]


def wait_finished(tokens: list[str], count: int, timeout: float) -> None:
    """Until ``count`` of the probe runs named by ``tokens`` have finished."""
    from apps.core.models import ProbeRun

    deadline = time.monotonic() + timeout
    while ProbeRun.objects.filter(token__in=tokens, finished_at__isnull=False).count() < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} heavy tasks did not finish within {timeout}s")
        time.sleep(0.5)


def wait_idle(watcher, timeout: float = 600) -> None:
    """Whatever earlier steps enqueued (e.g. the HTTP cases' tasks) has run."""
    for queue in ("main_worker", "celery", "heavy"):
        watcher.wait_empty(queue, timeout, interval=0.2)
    time.sleep(1)


def render(http_rows, latency_rows, args, enqueue_rows=()) -> str:
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine {common.machine()}; "
        f"load {common.loadavg()}",
        "versions " + ", ".join(f"{k} {v}" for k, v in common.versions().items()),
        "",
        f"HTTP through gunicorn as deployed, {args.concurrency} concurrent loopback clients",
        "",
        "| request | requests | client p50 / p99 ms | enqueue in the view p50 / p99 ms "
        "(Server-Timing) | its CPU time p50 / p99 ms | whole start service p50 / p99 ms "
        "| req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in http_rows:
        lines.append(
            f"| {row['label']} | {row['requests']:,} | {p50_p99(row['client_ms'])} | "
            f"{p50_p99(row['enqueue_ms'])} | {p50_p99(row.get('enqueue_cpu_ms'))} | "
            f"{p50_p99(row.get('start_ms'))} | {row['requests_per_s']:.0f} |")
    if enqueue_rows:
        lines += ["", "One enqueue, timed inside one process (no HTTP, a 2 ms pause between calls)",
                  "", "| call | calls | p50 ms | p99 ms | max ms | thread CPU p50 / p99 ms |",
                  "|---|---|---|---|---|---|"]
        for row in enqueue_rows:
            values = row["ms"]
            lines.append(f"| {row['label']} | {len(values):,} | {percentile(values, 50):.3f} | "
                         f"{percentile(values, 99):.3f} | {max(values):.3f} | "
                         f"{p50_p99(row.get('cpu_ms'), digits=3)} |")
    lines += ["", f"Enqueue-to-start ({args.seconds:g} s per row or window)", "",
              "| queue | tasks/s sent | samples | p50 ms | p99 ms | max ms |",
              "|---|---|---|---|---|---|"]
    for row in latency_rows:
        values = row["ms"]
        lines.append(f"| {row['label']} | {row['rate']:g} | {len(values):,} | "
                     f"{percentile(values, 50):.1f} | {percentile(values, 99):.1f} | "
                     f"{max(values):.1f} |")
    idle = next((r for r in latency_rows if r.get("isolation") == "idle"), None)
    loaded = next((r for r in latency_rows if r.get("isolation") == "backlog"), None)
    if idle and loaded:
        ratio = percentile(loaded["ms"], 99) / percentile(idle["ms"], 99)
        per_window = ", ".join(f"{b / a:.2f}" for a, b in zip(idle["window_p99"],
                                                              loaded["window_p99"]))
        lines += ["", f"main_worker p99 with heavy backlog / heavy idle (all windows): "
                      f"{ratio:.2f}; p50 {percentile(loaded['ms'], 50) / percentile(idle['ms'], 50):.2f}; "
                      f"p99 ratio per window pair: {per_window}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per HTTP case")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--rate", type=float, default=20.0, help="probe tasks per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per latency row")
    parser.add_argument("--backlog", type=int, default=12, help="long heavy tasks held back")
    parser.add_argument("--backlog-seconds", type=float, default=20.0,
                        help="how long each backlog task runs")
    parser.add_argument("--pairs", type=int, default=3,
                        help="alternating heavy-idle / heavy-backlog windows for the isolation ratio")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be between 1 and {MAX_REQUESTS}")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    if not 0.1 <= args.rate <= 500 or not 0.5 <= args.seconds <= 600:
        parser.error("--rate must be 0.1-500 and --seconds 0.5-600")
    if not 0 <= args.backlog <= 200 or not 0 <= args.backlog_seconds <= 120:
        parser.error("--backlog must be 0-200 and --backlog-seconds 0-120")
    if not 1 <= args.pairs <= 10:
        parser.error("--pairs must be between 1 and 10")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    with common.throwaway_vhost("bench-latency") as vhost, \
            tempfile.TemporaryDirectory(prefix="bench-latency-") as workdir:
        log("starting the system (supervisord, committed deploy/conf.d) ...")
        system = start_system(Path(workdir), vhost)
        try:
            log("HTTP:")
            http_rows = measure_http(system, requests_total=args.requests,
                                     concurrency=args.concurrency, log=log)
            log("single enqueue in this process:")
            enqueue_rows = measure_enqueue(count=args.requests, log=log)
            log("enqueue-to-start:")
            latency_rows = measure_start_latency(
                system, rate=args.rate, seconds=args.seconds, backlog=args.backlog,
                backlog_seconds=args.backlog_seconds, pairs=args.pairs, log=log)
        finally:
            system.stop()
    print(render(http_rows, latency_rows, args, enqueue_rows))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"http": [{k: v for k, v in r.items()} for r in http_rows],
             "start_latency": latency_rows, "enqueue": enqueue_rows,
             "versions": common.versions(),
             "machine": common.machine(),
             "summary": {r["label"]: statistics.median(r["ms"]) for r in latency_rows}},
            indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
