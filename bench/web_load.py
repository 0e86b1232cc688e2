"""Can a burst of slow reads stall the site?  50 parallel /api/v1/workers/ calls
while /health/ and /api/v1/tasks/ are probed; their p99 must stay under 100 ms.
The load comes from a process of its own, so the probes time the server, not
the load generator's threads.

Serves the project with gunicorn exactly as deployed (the web program's
command in deploy/conf.d/web.conf), on a throw-away RabbitMQ vhost with no
worker (so every inspect broadcast waits its full timeout: the worst case)
and a throw-away SQLite database.  ``--contrast`` also runs the same load
against gunicorn's sync workers, side by side in one run.

    python bench/web_load.py [--parallel 50] [--rounds 5] [--contrast]

The machine is shared and noisy: compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from tests.support.live import free_port, wait_for  # noqa: E402

PROJECT_ROOT = common.PROJECT_ROOT
TARGET_P99_MS = 100.0


def deployed_gunicorn_args(port: int) -> list[str]:
    conf = (PROJECT_ROOT / "deploy" / "conf.d" / "web.conf").read_text()
    command = re.search(r"^command=(.*)$", conf, re.M).group(1)
    command = command.replace("%(ENV_WEB_PORT)s", str(port))
    args = shlex.split(command)
    # This interpreter's gunicorn, whatever venv runs the benchmark.
    return [str(Path(sys.executable).parent / args[0]), *args[1:]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def prepare(workdir: Path, vhost: str) -> tuple[dict[str, str], str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "projectname.settings",
           "DATABASE_URL": f"sqlite:///{workdir / 'web_load.sqlite3'}",
           "CELERY_BROKER_URL": common.rabbit.broker_url(vhost),
           "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench-only-" + "x" * 50,
           "RUN_DIR": str(workdir)}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env,
                   cwd=PROJECT_ROOT, check=True)
    script = (
        "from django.contrib.auth.models import Group, User\n"
        "from queueworks.apitokens.services import api_token_create\n"
        "from django_celery_results.models import TaskResult\n"
        "for name in ('loader', 'prober'):\n"
        "    u = User.objects.create_user(name)\n"
        "    u.groups.add(Group.objects.get(name='task viewers'))\n"
        "    print(api_token_create(user=u, name='bench')[1])\n"
        "TaskResult.objects.bulk_create([TaskResult(task_id=f'bench-{i}', task_name='x',"
        " status='SUCCESS') for i in range(200)])\n"
    )
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], env=env,
                         cwd=PROJECT_ROOT, check=True, capture_output=True, text=True).stdout
    loader, prober = out.split()[-2:]
    return env, loader, prober


def _timed(base: str, path: str, headers: dict, seen: dict) -> float:
    import requests

    started = time.perf_counter()
    response = requests.get(base + path, headers=headers, timeout=60)
    took = (time.perf_counter() - started) * 1000
    statuses = seen.setdefault(path, {})
    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    return took


def _bursts(base: str, headers: dict, parallel: int, rounds: int, go, results) -> None:
    """The load, in a process of its own: its 50 client threads must not hold
    the probes' interpreter lock, or the probes would time the client."""
    timings, seen = [], {}
    go.wait()
    with ThreadPoolExecutor(parallel) as pool:
        for _ in range(rounds):
            timings += list(pool.map(
                lambda _: _timed(base, "/api/v1/workers/", headers, seen), range(parallel)))
            time.sleep(1.0)  # let the snapshot go stale between bursts
    results.put((timings, seen))


def run_once(env: dict[str, str], tokens: tuple[str, str], *, worker_class: str,
             parallel: int, rounds: int, log: Path) -> dict[str, list[float]]:
    import requests

    port = free_port()
    args = deployed_gunicorn_args(port)
    if worker_class != "gthread":
        args = [a for a in args if not a.startswith(("--worker-class", "--threads"))]
        args.append(f"--worker-class={worker_class}")
    server = subprocess.Popen(args, env=env, cwd=PROJECT_ROOT, stdout=open(log, "ab"),
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def up():
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited with {server.returncode}; see {log}")
            try:
                return requests.get(base + "/health/", timeout=5).ok
            except requests.RequestException:
                return False

        wait_for(up, 60, interval=0.3, message="gunicorn up")
        loader = {"Authorization": f"Token {tokens[0]}"}
        prober = {"Authorization": f"Token {tokens[1]}"}
        timings: dict[str, list[float]] = {"/health/": [], "/api/v1/tasks/": [],
                                           "/api/v1/workers/": []}
        seen: dict[str, dict[int, int]] = {}
        done = threading.Event()

        def probe():
            session_paths = [("/health/", {}), ("/api/v1/tasks/", prober)]
            while not done.is_set():
                for path, headers in session_paths:
                    timings[path].append(_timed(base, path, headers, seen))
                time.sleep(0.05)

        # Warm-up: imports, connections, the first snapshot.
        for _ in range(3):
            _timed(base, "/api/v1/workers/", loader, {})
            _timed(base, "/api/v1/tasks/", prober, {})
        context = multiprocessing.get_context("fork")  # forked before the probes' threads
        go, results = context.Event(), context.Queue()
        burster = context.Process(target=_bursts,
                                  args=(base, loader, parallel, rounds, go, results))
        burster.start()
        probers = [threading.Thread(target=probe) for _ in range(2)]
        for thread in probers:
            thread.start()
        go.set()
        timings["/api/v1/workers/"], burst_seen = results.get(timeout=60 * rounds + 60)
        burster.join(30)
        done.set()
        for thread in probers:
            thread.join()
        seen.update(burst_seen)
        timings["statuses"] = seen  # type: ignore[assignment]
        return timings
    finally:
        server.terminate()
        server.wait(timeout=30)


def render(rows: list[tuple[str, dict]], parallel: int, rounds: int, load: str) -> str:
    lines = [f"host: {os.cpu_count()} CPUs, load average before/after: {load}",
             f"{parallel} parallel GET /api/v1/workers/ x {rounds} bursts (no worker answers: "
             "each broadcast waits its full timeout) from one process, probes: 2 clients "
             "looping /health/ and /api/v1/tasks/ from another",
             f"{'web workers':<11} {'endpoint':<18} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'max ms':>8} {'429':>5}  p99 < {TARGET_P99_MS:.0f} ms  other statuses"]
    for label, timings in rows:
        for path in ("/health/", "/api/v1/tasks/", "/api/v1/workers/"):
            values = timings[path]
            statuses = timings["statuses"].get(path, {})
            p99 = percentile(values, 0.99)
            verdict = ("yes" if p99 < TARGET_P99_MS else "NO") if path != "/api/v1/workers/" \
                else "-"
            others = {code: n for code, n in sorted(statuses.items()) if code not in (200, 429)}
            lines.append(f"{label:<11} {path:<18} {len(values):>5} "
                         f"{statistics.median(values):>8.1f} {p99:>8.1f} {max(values):>8.1f} "
                         f"{statuses.get(429, 0):>5}  {verdict:<14} {others or ''}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--contrast", action="store_true",
                        help="also run gunicorn's sync workers, side by side")
    args = parser.parse_args(argv)
    if not 1 <= args.parallel <= 200 or not 1 <= args.rounds <= 50:
        raise SystemExit("error: --parallel 1..200, --rounds 1..50")
    with common.throwaway_vhost("web-load") as vhost, \
            tempfile.TemporaryDirectory(prefix="web-load-") as tmp:
        workdir = Path(tmp)
        env, loader, prober = prepare(workdir, vhost)
        load_before = os.getloadavg()[0]
        rows = [("gthread", run_once(env, (loader, prober), worker_class="gthread",
                                     parallel=args.parallel, rounds=args.rounds,
                                     log=workdir / "web.log"))]
        if args.contrast:
            rows.append(("sync", run_once(env, (loader, prober), worker_class="sync",
                                          parallel=args.parallel, rounds=args.rounds,
                                          log=workdir / "web.log")))
        load = f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"
        print(render(rows, args.parallel, args.rounds, load))
        failed = any(percentile(t[p], 0.99) >= TARGET_P99_MS for label, t in rows[:1]
                     for p in ("/health/", "/api/v1/tasks/"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
