"""Shared pieces of the benchmarks: throw-away vhosts, process CPU/RSS, queue depth.

Every benchmark runs in its own RabbitMQ vhost (created here, deleted at the
end), so it never touches the default vhost or another session's queues.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from tests.support import rabbit  # noqa: E402  (vhost helpers shared with the tests)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# Hard upper bound on any benchmark size: a typo must not flood the broker.
MAX_TASKS = 200_000
# bench/throughput.py's backlog sizes (--sizes) may go up to a million.
MAX_BACKLOG = 1_000_000


def bounded(n: int, limit: int = MAX_TASKS, option: str = "--tasks") -> int:
    if not 1 <= n <= limit:
        raise SystemExit(f"error: {option} must be between 1 and {limit:,}, got {n}")
    return n


def pieces_option(parser, text: str, known) -> list[str]:
    """The comma-separated ``--pieces`` value, each a name of ``known``."""
    pieces = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(pieces) - set(known))
    if unknown:
        parser.error(f"--pieces: unknown piece(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(known)}")
    return pieces


@contextlib.contextmanager
def throwaway_vhost(prefix: str = "bench"):
    vhost = rabbit.create_vhost(prefix)
    try:
        yield vhost
    finally:
        rabbit.delete_vhost(vhost)


def amqp_connection(vhost: str, *, confirm_publish: bool = False):
    """``confirm_publish``: every basic_publish waits for the broker's
    confirmation (py-amqp's confirm_select alone does not wait)."""
    import amqp

    host = rabbit.AMQP_HOSTPORT
    conn = amqp.Connection(host=host, userid=rabbit.AUTH[0], password=rabbit.AUTH[1],
                           virtual_host=vhost, heartbeat=0, confirm_publish=confirm_publish)
    conn.connect()
    return conn


# -- processes -----------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def children_map() -> dict[int, list[int]]:
    result: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields:
                result.setdefault(int(fields[1]), []).append(int(entry))
    return result


def tree(pid: int) -> list[int]:
    kids = children_map()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += kids.get(current, [])
    return found


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process, plus that of its reaped children."""
    fields = _stat(pid)
    if not fields:
        return 0.0
    # utime stime cutime cstime are fields 14..17 (1-based) -> 11..14 here.
    return sum(int(value) for value in fields[11:15]) / CLK_TCK


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid))


def rss_bytes(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[21]) * PAGE if fields else 0


def rabbitmq_pid() -> int | None:
    """The beam of the broker the benchmark uses.  Several run on this host:
    the 4.x pass's node (QUEUEWORKS_TEST_BROKER=rabbitmq4) is known by its
    node name, the host's own node by running outside the 4.x nodes' root."""
    from tests.support import rabbitmq4

    wanted = (f"RABBITMQ_NODENAME={rabbitmq4.SINGLE.name}@localhost".encode()
              if rabbitmq4.TEST_BROKER == "rabbitmq4" else None)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"beam.smp" not in cmd or b"rabbit" not in cmd:
                continue
            if wanted is None:
                if os.readlink(f"/proc/{entry}/root") == "/":
                    return int(entry)
            elif wanted in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                return int(entry)
        except OSError:
            continue
    return None


class RssMonitor:
    """Samples the RSS of process trees; remembers the peak of each root's tree."""

    def __init__(self, roots: dict[str, int], interval: float = 0.1):
        self.roots = roots
        self.interval = interval
        self.peak_total: dict[str, int] = {name: 0 for name in roots}
        self.peak_process: dict[str, int] = {name: 0 for name in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self):
        for name, root in self.roots.items():
            sizes = [rss_bytes(p) for p in tree(root)]
            self.peak_total[name] = max(self.peak_total[name], sum(sizes))
            self.peak_process[name] = max(self.peak_process[name], max(sizes, default=0))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


@dataclass
class CpuMeter:
    """CPU seconds used by worker trees and by RabbitMQ between start and stop."""

    worker_roots: list[int]
    rabbit: int | None = field(default_factory=rabbitmq_pid)

    def _read(self) -> tuple[float, float]:
        workers = sum(tree_cpu(pid) for pid in self.worker_roots)
        broker = cpu_seconds(self.rabbit) if self.rabbit else 0.0
        return workers, broker

    def start(self):
        self._start = self._read()
        return self

    def stop(self) -> tuple[float, float]:
        end = self._read()
        return end[0] - self._start[0], end[1] - self._start[1]


# -- queues ----------------------------------------------------------------------
class QueueWatcher:
    """Ready-message count of a queue, by passive declare on its own connection."""

    def __init__(self, vhost: str):
        self.conn = amqp_connection(vhost)
        self.channel = self.conn.channel()

    def depth(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).message_count

    def wait_exists(self, queue: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.depth(queue)
                return
            except Exception:  # noqa: BLE001 - 404 closes the channel
                self.channel = self.conn.channel()
                time.sleep(0.2)
        raise TimeoutError(f"queue {queue} was never declared")

    def wait_consumers(self, queue: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.channel.queue_declare(queue, passive=True).consumer_count >= count:
                    return
            except Exception:  # noqa: BLE001
                self.channel = self.conn.channel()
            time.sleep(0.2)
        raise TimeoutError(f"no consumer on {queue} after {timeout}s")

    def wait_empty(self, queue: str, timeout: float, interval: float = 0.005) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.depth(queue) == 0:
                return time.perf_counter()
            time.sleep(interval)
        raise TimeoutError(f"queue {queue} still not empty after {timeout}s")

    def time_drain(self, queue: str, total: int, timeout: float) -> tuple[float, int]:
        """Seconds from the first consumed message to an empty queue, and how many."""
        deadline = time.monotonic() + timeout
        while True:
            depth = self.depth(queue)
            if depth < total:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"nobody consumed {queue} within {timeout}s")
            time.sleep(0.002)
        started, counted = time.perf_counter(), depth
        ended = self.wait_empty(queue, timeout)
        return ended - started, counted

    def close(self):
        with contextlib.suppress(Exception):
            self.conn.close()


# -- reporting --------------------------------------------------------------------
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


def median_range(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def fmt_rate(values: list[float]) -> str:
    if not values:
        return "-"
    med, low, high = median_range(values)
    if len(values) == 1:
        return f"{med:,.0f}"
    return f"{med:,.0f} ({low:,.0f}-{high:,.0f})"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("celery", "kombu", "amqp", "dramatiq", "pika", "django", "gunicorn"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    with contextlib.suppress(Exception):
        overview = rabbit._api("GET", "overview").json()
        found["rabbitmq"] = overview.get("rabbitmq_version", "?")
        found["erlang"] = overview.get("erlang_version", "?")
    return found


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {socket.gethostname()}"


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def django_with_migrated_sqlite(database: Path, *, settings: str, environment: dict[str, str],
                                secret: str) -> str:
    """Set up Django in this process on its own settings module and a fresh
    SQLite file (migrated), for a benchmark that runs its own workers; the
    database URL, for them."""
    os.environ.update({**environment, "DJANGO_SETTINGS_MODULE": settings,
                       "DJANGO_TEST_SUPPORT": "1", "DATABASE_URL": f"sqlite:///{database}"})
    os.environ.setdefault("DJANGO_SECRET_KEY", secret)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return os.environ["DATABASE_URL"]


def operator_token(prefix: str = "bench") -> str:
    """A Task API token of a new user in the "task operators" group (Django set up)."""
    from django.contrib.auth.models import Group, Permission, User
    from queueworks.apitokens.services import api_token_create

    user = User.objects.create_user(f"{prefix}-{uuid.uuid4().hex[:8]}")
    group, _ = Group.objects.get_or_create(name="task operators")
    group.permissions.add(Permission.objects.get(content_type__app_label="taskapi",
                                                 codename="operate_tasks"))
    user.groups.add(group)
    return api_token_create(user=user, name="bench")[1]
