"""bench/latency.py, part 1: the HTTP rows (loopback requests from client
threads, the views' own ``Server-Timing``) and one enqueue timed in this
process against a CPU-only control."""

from __future__ import annotations

import threading
import time
import uuid

from bench.common import summary
from bench.common import operator_token


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
    probe = "queueworks.core.tasks.probe"
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
    from queueworks.core.tasks import probe
    from queueworks.dispatch.services import task_enqueue

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
