"""Side-by-side throughput of noop tasks on the local RabbitMQ, in one run.

    .venv/bin/python bench/throughput.py                      # defaults below
    .venv/bin/python bench/throughput.py --tasks 20000 --rounds 3
    .venv/bin/python bench/throughput.py --only raw,project --tasks 2000 --rounds 1

Systems (each in its own throw-away vhost, deleted afterwards):

* ``raw``      the limit: py-amqp publishing persistent messages to a durable
               queue, one consumer process with manual acks, prefetch 100;
* ``celery``   Celery with its tutorial defaults (bench/celery_tutorial.py);
* ``dramatiq`` Dramatiq's RabbitMQ broker, 2 processes (bench/dramatiq_app.py);
* ``main``     this project's user-facing ``main_worker`` as deployed (prefork,
               priorities, prefetch 1, task events), the same way;
* ``project``  this project's bulk lane exactly as deployed: supervisord runs
               the committed deploy/conf.d/bulk_worker_*.conf (acks late,
               its pool, prefetch and limits), tasks sent with the project's
               bulk enqueue (persistent, durable queue, publisher confirms).

Modes: ``drain`` (a backlog of N tasks is waiting when the workers start) and
``live`` (the producer publishes N tasks while the workers consume; the time
runs from the first publish to an empty queue).  Rates are medians over the
rounds with min-max; CPU per task is user+system time of the worker process
trees and of the RabbitMQ node (the node is shared with anything else running
on it); RSS is the peak of the worker process tree.  Then the producers alone,
and optionally (``--memory-tasks``) the project worker's RSS over many tasks.
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

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import PROJECT_ROOT, QueueWatcher  # noqa: E402

SYSTEMS = ("raw", "celery", "dramatiq", "project", "main")
# What the project systems put in this process's environment for themselves.
PROJECT_ONLY_ENV = {"DATABASE_URL", "CELERY_RESULT_BACKEND", "CELERY_CUSTOM_WORKER_POOL"}


# -- message producers ------------------------------------------------------------
def raw_publish(vhost: str, queue: str, n: int, *, confirm: str = "none",
                messages: list | None = None) -> float:
    """Publish n persistent messages (tiny ones, or ``messages`` prebuilt); returns
    seconds.  confirm: none|stream|each."""
    import amqp

    conn = common.amqp_connection(vhost)
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, auto_delete=False)
    body = b'{"n": 0}'
    acked = [0]
    if confirm != "none":
        ch.confirm_select()
    if confirm == "stream":
        def on_ack(tag, multiple):
            acked[0] = tag if multiple else acked[0] + 1
        ch.events["basic_ack"].add(on_ack)
    started = time.perf_counter()
    for index in range(n):
        message = (messages[index] if messages is not None
                   else amqp.Message(body, delivery_mode=2, content_type="application/json"))
        if confirm == "each":
            ch.basic_publish_confirm(message, exchange="", routing_key=queue)
        else:
            ch.basic_publish(message, exchange="", routing_key=queue)
    if confirm == "stream":
        while acked[0] < n:
            conn.drain_events(timeout=30)
    else:
        # A cheap round trip, so everything sent has reached the broker.
        ch.queue_declare(queue, passive=True)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def celery_backlog(app, task_name: str, vhost: str, queue: str, n: int) -> None:
    """n Celery protocol 2 messages, built by app.amqp.as_task_v2, published raw."""
    import amqp
    from kombu.utils.json import dumps

    conn = common.amqp_connection(vhost)
    ch = conn.channel()
    # Celery's default queue is durable without arguments, as its worker declares it.
    ch.queue_declare(queue, durable=True, auto_delete=False)
    for i in range(n):
        task_id = str(uuid.uuid4())
        headers, properties, body, _ = app.amqp.as_task_v2(task_id, task_name, args=(i,))
        ch.basic_publish(amqp.Message(
            dumps(body).encode(), content_type="application/json", content_encoding="utf-8",
            application_headers=headers, delivery_mode=2, **properties,
        ), exchange="", routing_key=queue)
    ch.queue_declare(queue, passive=True)
    conn.close()


# -- systems ----------------------------------------------------------------------
class System:
    name = ""
    queue = ""
    description = ""

    def __init__(self, vhost: str, workdir: Path):
        self.vhost, self.workdir = vhost, workdir
        self.broker_url = common.rabbit.admin_broker_url(vhost)

    def env(self) -> dict[str, str]:
        # Not the project's settings: with DJANGO_SETTINGS_MODULE set, Celery
        # would install its Django fixup in the tutorial worker too.
        env = {key: value for key, value in os.environ.items()
               if key not in PROJECT_ONLY_ENV and not key.startswith("DJANGO_")}
        env.update({
            "BENCH_BROKER_URL": self.broker_url,
            "CELERY_BROKER_URL": self.broker_url,
            "BENCH_AMQP_URL": f"amqp://{common.rabbit.AUTH[0]}:{common.rabbit.AUTH[1]}@"
                              f"{common.rabbit.AMQP_HOSTPORT}/{self.vhost}",
            "PYTHONPATH": str(PROJECT_ROOT),
        })
        return env

    # subclasses: setup(), start_workers(), stop_workers(), roots(), backlog(n),
    # produce(n), teardown()
    #: What the workers log for a task that raised (counted as failed).
    failure_markers: tuple[str, ...] = ("raised unexpected",)

    def log_paths(self) -> list[Path]:
        return []

    def failures(self) -> int:
        """Failed tasks so far, as the workers logged them."""
        total = 0
        for path in self.log_paths():
            if path.exists():
                text = path.read_text(errors="replace")
                total += sum(text.count(marker) for marker in self.failure_markers)
        return total

    def setup(self):
        pass

    def activate(self):
        """Before each of its rounds: point this process's producers at this system."""

    def teardown(self):
        self.stop_workers()


class PopenSystem(System):
    command: list[str] = []

    def __init__(self, vhost, workdir):
        super().__init__(vhost, workdir)
        self.process: subprocess.Popen | None = None

    def log_paths(self) -> list[Path]:
        return [self.workdir / f"{self.name}.log"]

    def start_workers(self):
        log = open(self.workdir / f"{self.name}.log", "ab")
        self.process = subprocess.Popen(self.command, env=self.env(), cwd=PROJECT_ROOT,
                                        stdout=log, stderr=subprocess.STDOUT)

    def stop_workers(self):
        if self.process:
            common.stop_process(self.process)
            self.process = None

    def roots(self) -> list[int]:
        return [self.process.pid] if self.process else []


class Raw(PopenSystem):
    name, queue = "raw", "raw"
    description = "raw py-amqp loop (persistent publish; consume, manual ack, prefetch 100)"
    failure_markers = ()  # no task to fail: it acks what it receives

    def setup(self):
        raw_publish(self.vhost, self.queue, 0)
        self.command = [sys.executable, __file__, "_raw-consumer", "--vhost", self.vhost,
                        "--queue", self.queue]

    def backlog(self, n):
        raw_publish(self.vhost, self.queue, n)

    def produce(self, n):
        raw_publish(self.vhost, self.queue, n)


class CeleryTutorial(PopenSystem):
    name, queue = "celery", "celery"
    description = "Celery tutorial defaults (prefork -c 2, prefetch x4, acks early)"

    def setup(self):
        self.command = [common.venv_bin("celery"), "-A", "bench.celery_tutorial", "worker",
                        "--concurrency=2", "--loglevel=INFO",
                        f"--hostname=tutorial-{uuid.uuid4().hex[:6]}@%h"]
        os.environ["BENCH_BROKER_URL"] = self.broker_url
        from bench import celery_tutorial

        use_broker(celery_tutorial.app, self.broker_url)
        self.app, self.task = celery_tutorial.app, celery_tutorial.noop

    def activate(self):
        use_broker(self.app, self.broker_url)

    def backlog(self, n):
        celery_backlog(self.app, self.task.name, self.vhost, self.queue, n)

    def produce(self, n):
        for i in range(n):
            self.task.delay(i)

    def teardown(self):
        super().teardown()
        use_broker(self.app, "pyamqp://unused//")


class Dramatiq(PopenSystem):
    name, queue = "dramatiq", "default"
    description = "Dramatiq, RabbitMQ broker, 2 processes x 8 threads (defaults)"
    failure_markers = ("Failed to process message",)

    def setup(self):
        self.command = [common.venv_bin("dramatiq"), "bench.dramatiq_app", "--processes", "2",
                        "--threads", "8"]
        os.environ["BENCH_AMQP_URL"] = self.env()["BENCH_AMQP_URL"]
        import importlib

        from bench import dramatiq_app

        self.module = importlib.reload(dramatiq_app)
        self.module.broker.declare_queue("default")

    def backlog(self, n):
        self.produce(n)

    def produce(self, n):
        send = self.module.noop.send
        for i in range(n):
            send(i)

    def teardown(self):
        super().teardown()
        self.module.broker.close()


class Project(System):
    name, queue = "project", "bulk"
    description = "this project: the bulk lane as deployed (supervisord, committed conf)"
    batch = 1000

    @property
    def programs(self) -> list[str]:
        """Every worker program consuming the queue (bulk_worker_1, bulk_worker_2)."""
        from projectname.topology import TOPOLOGY

        return [worker.name for worker in TOPOLOGY.consumers_of(self.queue)]

    @property
    def consumers(self) -> int:
        return len(self.programs)

    def log_paths(self) -> list[Path]:
        return [self.run_dir / "log" / f"{name}.log" for name in self.programs]

    def setup(self):
        from tests.support.live import build_env

        self.run_dir = self.workdir / "system"
        (self.run_dir / "log").mkdir(parents=True)
        database_url = f"sqlite:///{self.workdir / 'bench.sqlite3'}"
        self.system_env = build_env(
            run_dir=self.run_dir, broker_url=self.broker_url, database_url=database_url,
            web_port=common_free_port(), flower_port=common_free_port(),
        )
        # This process enqueues like the web process would.
        for key in ("CELERY_BROKER_URL", "DATABASE_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY",
                    "DJANGO_PROFILE", "DJANGO_TEST_SUPPORT"):
            os.environ[key] = self.system_env[key]
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                       env=self.system_env, cwd=PROJECT_ROOT, check=True)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
        import django

        django.setup()
        from apps.dispatch.services import tasks_enqueue_bulk
        from apps.testing.tasks import noop
        from projectname.celery import app

        use_broker(app, self.broker_url)
        self.app, self.noop, self.enqueue = app, noop, tasks_enqueue_bulk
        self.supervisord: subprocess.Popen | None = None
        # Declare the queue with the topology's arguments, as the workers will.
        with app.connection_for_write() as connection:
            app.amqp.queues[self.queue](connection.default_channel).declare()

    def _rpc(self):
        import xmlrpc.client

        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.run_dir}/supervisor.sock")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def start_workers(self):
        if self.supervisord is None:
            from apps.core.supervisor import render_supervisord_conf

            conf = self.run_dir / "supervisord.conf"
            conf.write_text(render_supervisord_conf(
                run_dir=str(self.run_dir),
                include=" ".join(str(PROJECT_ROOT / "deploy" / "conf.d" / f"{name}.conf")
                                 for name in self.programs),
            ))
            self.supervisord = subprocess.Popen(
                [common.venv_bin("supervisord"), "--nodaemon", "-c", str(conf)],
                env=self.system_env, cwd=PROJECT_ROOT,
                stdout=open(self.run_dir / "supervisord.out", "ab"), stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 30
            while not (self.run_dir / "supervisor.sock").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("supervisord did not start")
                time.sleep(0.1)
        else:
            for name in self.programs:
                self._rpc().startProcess(name, False)

    def stop_workers(self):
        if self.supervisord is not None:
            rpc = self._rpc()
            for name in self.programs:
                if rpc.getProcessInfo(name)["statename"] in ("RUNNING", "STARTING"):
                    rpc.stopProcess(name, True)

    def roots(self) -> list[int]:
        if self.supervisord is None:
            return []
        pids = [self._rpc().getProcessInfo(name)["pid"] for name in self.programs]
        return [pid for pid in pids if pid]

    def activate(self):
        use_broker(self.app, self.broker_url)

    def backlog(self, n):
        for start in range(0, n, 10_000):
            self.enqueue(task=self.noop, queue=self.queue,
                         kwargs_list=[{"n": i} for i in range(start, min(n, start + 10_000))])

    def produce(self, n):
        for start in range(0, n, self.batch):
            self.enqueue(task=self.noop, queue=self.queue,
                         kwargs_list=[{"n": i} for i in range(start, min(n, start + self.batch))])

    def teardown(self):
        if self.supervisord is not None:
            self.supervisord.send_signal(signal.SIGTERM)
            try:
                self.supervisord.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.supervisord.kill()
            self.supervisord = None
        use_broker(self.app, "pyamqp://unused//")


def use_broker(app, url: str) -> None:
    """Point a Celery app (and kombu's global pools) at another vhost, and make
    it the current app: ``@shared_task`` tasks (apps.testing's noop) publish
    through whichever app is current, and the benchmark holds several."""
    from kombu import pools

    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    pools.reset()
    app.conf.broker_url = url
    # Celery reads CELERY_BROKER_URL from the environment before its config.
    os.environ["CELERY_BROKER_URL"] = url
    app.set_current()


def common_free_port() -> int:
    from tests.support.live import free_port

    return free_port()


class ProjectMain(Project):
    """The user-facing lane, for comparison: not built for throughput."""

    name, queue = "main", "main_worker"
    description = ("this project: main_worker as deployed (prefork, priorities, prefetch 1, "
                   "task events)")


CLASSES = {"raw": Raw, "celery": CeleryTutorial, "dramatiq": Dramatiq, "project": Project,
           "main": ProjectMain}


# -- measurement ------------------------------------------------------------------
def wait_ready(watcher: QueueWatcher, system: System, timeout: float = 90) -> None:
    watcher.wait_exists(system.queue, timeout)
    watcher.wait_consumers(system.queue, getattr(system, "consumers", 1), timeout)


def measure_systems(names: list[str], n: int, rounds: int, log=print) -> list[dict]:
    """Every system set up at once, then measured round-robin: round 1 of each,
    then round 2 of each...  A noisy minute on this shared machine then hits
    every system about equally instead of all rounds of one."""
    with contextlib.ExitStack() as stack:
        entries = []
        for name in names:
            vhost = stack.enter_context(common.throwaway_vhost(f"bench-{name}"))
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-{name}-"))
            system = CLASSES[name](vhost, Path(workdir))
            stack.callback(system.teardown)
            log(f"{name}: {system.description}")
            system.setup()
            watcher = QueueWatcher(vhost)
            stack.callback(watcher.close)
            result = {"system": name, "description": system.description, "drain": [],
                      "live": [], "cpu_worker_us": [], "cpu_rabbit_us": [],
                      "rss_peak_mb": 0.0, "rss_process_mb": 0.0,
                      "sent": [], "executed": [], "failed": []}
            entries.append((system, watcher, result))
        for round_no in range(1, rounds + 1):
            for system, watcher, result in entries:
                measure_round(system, watcher, result, n, round_no, log)
        return [result for _, _, result in entries]


def measure_round(system: System, watcher: QueueWatcher, result: dict, n: int, round_no: int,
                  log=print) -> None:
    name = system.name
    system.activate()
    timeout = max(120.0, n / 100)
    acked_before, failed_before = acked_total(system), system.failures()
    # drain: the backlog waits, then the workers start
    system.stop_workers()
    system.backlog(n)
    wait_depth(watcher, system.queue, n)
    system.start_workers()
    deadline = time.monotonic() + timeout
    while watcher.depth(system.queue) >= n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: workers never started consuming")
        time.sleep(0.002)
    t0 = time.perf_counter()
    meter = common.CpuMeter(system.roots()).start()
    monitor_roots = {str(pid): pid for pid in system.roots()}
    with common.RssMonitor(monitor_roots) as rss:
        t1 = watcher.wait_empty(system.queue, timeout)
        worker_cpu, rabbit_cpu = meter.stop()
    drain_rate = n / (t1 - t0)
    # live: publish while the (now idle) workers consume
    wait_ready(watcher, system)
    meter = common.CpuMeter(system.roots()).start()
    with common.RssMonitor(monitor_roots) as rss2:
        t0 = time.perf_counter()
        system.produce(n)
        t1 = watcher.wait_empty(system.queue, timeout)
        live_cpu = meter.stop()
    live_rate = n / (t1 - t0)
    # An empty queue is not "done": count what the broker saw acknowledged
    # and what the workers logged as failed, for both modes of the round.
    executed = settled_acks(system, acked_before + 2 * n) - acked_before
    # Idle workers of one system must not take CPU from the next one.
    system.stop_workers()
    failed = system.failures() - failed_before
    result["sent"].append(2 * n)
    result["executed"].append(executed)
    result["failed"].append(failed)
    result["drain"].append(drain_rate)
    result["live"].append(live_rate)
    result["cpu_worker_us"].append(1e6 * (worker_cpu + live_cpu[0]) / (2 * n))
    result["cpu_rabbit_us"].append(1e6 * (rabbit_cpu + live_cpu[1]) / (2 * n))
    for monitor in (rss, rss2):
        result["rss_peak_mb"] = max(result["rss_peak_mb"],
                                    max(monitor.peak_total.values()) / 2**20)
        result["rss_process_mb"] = max(result["rss_process_mb"],
                                       max(monitor.peak_process.values()) / 2**20)
    log(f"  {name} round {round_no}: drain {drain_rate:,.0f}/s, "
        f"live {live_rate:,.0f}/s, executed {executed}/{2 * n}, failed {failed} "
        f"(load {common.loadavg()})")


def _queue_stats(system: System) -> tuple[int, bool]:
    """(messages acknowledged on the system's queue since it was declared,
    nothing ready or unacknowledged), from RabbitMQ's management statistics,
    which are refreshed every few seconds."""
    try:
        info = common.rabbit.queue_info(system.vhost, system.queue)
    except requests.HTTPError as error:
        if error.response is None or error.response.status_code != 404:
            raise
        return 0, True  # not declared yet: nothing sent, nothing acknowledged
    acked = int((info.get("message_stats") or {}).get("ack", 0))
    return acked, not info.get("messages") and not info.get("messages_unacknowledged")


def acked_total(system: System) -> int:
    return _queue_stats(system)[0]


def settled_acks(system: System, expected: int, timeout: float = 180) -> int:
    """The ack count once it reaches ``expected``, or once the queue has been
    idle (nothing ready, nothing unacknowledged) with the same count for two
    statistics refreshes: an empty queue alone says nothing about messages
    still prefetched by a worker."""
    deadline = time.monotonic() + timeout
    idle_since: tuple[int, float] | None = None
    while True:
        acked, idle = _queue_stats(system)
        if acked >= expected or time.monotonic() > deadline:
            return acked
        if not idle:
            idle_since = None
        elif idle_since is None or idle_since[0] != acked:
            idle_since = (acked, time.monotonic())
        elif time.monotonic() - idle_since[1] > 12:
            return acked
        time.sleep(1)


def wait_depth(watcher: QueueWatcher, queue: str, n: int, timeout: float = 60) -> None:
    watcher.wait_exists(queue, timeout)
    deadline = time.monotonic() + timeout
    while watcher.depth(queue) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"backlog of {n} never reached {queue}")
        time.sleep(0.05)


def measure_producers(n: int, rounds: int, systems: list[str], log=print) -> list[dict]:
    """Publish-only rates (nobody consumes), each in its own throw-away vhost."""
    rows = []

    def run(label, fn, count):
        rates = []
        for _ in range(rounds):
            with common.throwaway_vhost("bench-producer") as vhost:
                rates.append(count / fn(vhost, count))
        rows.append({"producer": label, "tasks": count, "rates": rates})
        log(f"  producer {label}: {common.fmt_rate(rates)}/s")

    slow = max(1, min(n, 5000))
    if "raw" in systems:
        run("raw py-amqp publish (persistent, no confirms)",
            lambda v, c: raw_publish(v, "raw", c), n)
        run("raw py-amqp publish, confirms streamed",
            lambda v, c: raw_publish(v, "raw", c, confirm="stream"), n)
        run("raw py-amqp publish, confirm wait after each message",
            lambda v, c: raw_publish(v, "raw", c, confirm="each"), slow)
    if "celery" in systems:
        def celery_delay(vhost, count):
            from bench import celery_tutorial

            use_broker(celery_tutorial.app, common.rabbit.admin_broker_url(vhost))
            celery_tutorial.noop.delay(0)  # connect and declare first
            started = time.perf_counter()
            for i in range(count):
                celery_tutorial.noop.delay(i)
            elapsed = time.perf_counter() - started
            use_broker(celery_tutorial.app, "pyamqp://unused//")
            return elapsed
        run("Celery tutorial .delay() (no confirms)", celery_delay, slow)
    if "dramatiq" in systems:
        def dramatiq_send(vhost, count):
            import importlib

            from bench import dramatiq_app

            os.environ["BENCH_AMQP_URL"] = (f"amqp://{common.rabbit.AUTH[0]}:{common.rabbit.AUTH[1]}"
                                            f"@{common.rabbit.AMQP_HOSTPORT}/{vhost}")
            module = importlib.reload(dramatiq_app)
            module.noop.send(0)
            started = time.perf_counter()
            for i in range(count):
                module.noop.send(i)
            elapsed = time.perf_counter() - started
            module.broker.close()
            return elapsed
        run("Dramatiq .send()", dramatiq_send, n)
    if "project" in systems:
        def project_app(vhost):
            os.environ["CELERY_BROKER_URL"] = common.rabbit.admin_broker_url(vhost)
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
            os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
            # The benchmark task (noop) lives in apps/testing, installed by this flag.
            os.environ.setdefault("DJANGO_PROFILE", "development")
            os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
            import django

            django.setup()
            from projectname.celery import app

            use_broker(app, common.rabbit.admin_broker_url(vhost))
            return app

        def project_delay(vhost, count):
            app = project_app(vhost)
            from apps.testing.tasks import noop

            noop.delay(0)
            started = time.perf_counter()
            for i in range(count):
                noop.delay(i)
            elapsed = time.perf_counter() - started
            use_broker(app, "pyamqp://unused//")
            return elapsed

        def project_bulk(vhost, count):
            app = project_app(vhost)
            from apps.dispatch.services import tasks_enqueue_bulk
            from apps.testing.tasks import noop

            tasks_enqueue_bulk(task=noop, kwargs_list=[{"n": 0}])
            started = time.perf_counter()
            tasks_enqueue_bulk(task=noop, kwargs_list=[{"n": i} for i in range(count)])
            elapsed = time.perf_counter() - started
            use_broker(app, "pyamqp://unused//")
            return elapsed

        def raw_project_messages(vhost, count):
            """The limit for bulk enqueue: the same messages, raw py-amqp, confirms streamed."""
            import uuid as _uuid

            app = project_app(vhost)
            from apps.dispatch.services import _MessageBuilder
            from apps.testing.tasks import noop

            build = _MessageBuilder(app, noop, app.conf.task_default_priority)
            messages = [build(str(_uuid.uuid4()), {"n": i}) for i in range(count)]
            elapsed = raw_publish(vhost, "raw", count, confirm="stream", messages=messages)
            use_broker(app, "pyamqp://unused//")
            return elapsed

        confirm = "with confirm per message" if _project_confirms() else "no confirms"
        run(f"project .delay() as configured ({confirm})", project_delay, slow)
        run("project tasks_enqueue_bulk (one batch, confirms streamed)", project_bulk, n)
        run("raw py-amqp publish of the same Celery messages, prebuilt, confirms streamed",
            raw_project_messages, n)
    return rows


def _project_confirms() -> bool:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    # The benchmark task (noop) lives in apps/testing, installed by this flag.
    os.environ.setdefault("DJANGO_PROFILE", "development")
    os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
    from django.conf import settings

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    return bool(options.get("confirm_publish"))


def measure_memory(n: int, log=print) -> dict:
    """RSS of the project's bulk workers after a warm-up, and after n more tasks."""
    with common.throwaway_vhost("bench-memory") as vhost, \
            tempfile.TemporaryDirectory(prefix="bench-memory-") as workdir:
        system = Project(vhost, Path(workdir))
        watcher = None
        try:
            system.setup()
            watcher = QueueWatcher(vhost)
            system.start_workers()
            wait_ready(watcher, system)
            warmup = min(5000, n)
            system.produce(warmup)
            watcher.wait_empty(system.queue, 300)
            time.sleep(1)
            roots = system.roots()

            def rss_now() -> int:
                return sum(common.rss_bytes(p) for root in roots for p in common.tree(root))

            before = rss_now()
            samples = []
            done = 0
            while done < n:
                step = min(10_000, n - done)
                system.produce(step)
                watcher.wait_empty(system.queue, 600)
                done += step
                samples.append(rss_now())
            time.sleep(1)
            after = rss_now()
        finally:
            if watcher:
                watcher.close()
            system.teardown()
    change = 100 * (after - before) / before
    log(f"  memory: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB ({change:+.1f}%) "
        f"over {n:,} tasks")
    return {"tasks": n, "before_mb": before / 2**20, "after_mb": after / 2**20,
            "max_mb": max(samples) / 2**20, "change_pct": change}


# -- report -----------------------------------------------------------------------
def render(results: list[dict], producers: list[dict], memory: dict | None, args) -> str:
    raw = next((r for r in results if r["system"] == "raw"), None)
    raw_drain = common.median_range(raw["drain"])[0] if raw else None
    raw_live = common.median_range(raw["live"])[0] if raw else None
    v = common.versions()
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine {common.machine()}; "
        f"load {common.loadavg()}",
        "versions " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"{args.tasks:,} noop tasks per mode, {args.rounds} round(s): median (min-max) tasks/s",
        "",
        "| system | drain tasks/s | x raw | live tasks/s | x raw | CPU us/task workers | "
        "CPU us/task RabbitMQ | peak RSS tree / largest process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        drain = common.median_range(r["drain"])[0]
        live = common.median_range(r["live"])[0]
        lines.append(
            f"| {r['description']} | {common.fmt_rate(r['drain'])} | "
            f"{drain / raw_drain:.2f} |" if raw_drain else
            f"| {r['description']} | {common.fmt_rate(r['drain'])} | - |")
        lines[-1] += (
            f" {common.fmt_rate(r['live'])} | "
            + (f"{live / raw_live:.2f}" if raw_live else "-")
            + f" | {common.median_range(r['cpu_worker_us'])[0]:.0f} | "
            f"{common.median_range(r['cpu_rabbit_us'])[0]:.0f} | "
            f"{r['rss_peak_mb']:.0f} / {r['rss_process_mb']:.0f} MiB |")
    by = {r["system"]: r for r in results}
    if "project" in by:
        project = by["project"]
        ratios = []
        for other in ("celery", "dramatiq", "raw"):
            if other in by:
                for mode in ("drain", "live"):
                    ratios.append(
                        f"{mode} project/{other} = "
                        f"{common.median_range(project[mode])[0] / common.median_range(by[other][mode])[0]:.2f}")
        lines += ["", "ratios: " + "; ".join(ratios)]
    if producers:
        lines += ["", "| producer alone | tasks | tasks/s |", "|---|---|---|"]
        lines += [f"| {p['producer']} | {p['tasks']:,} | {common.fmt_rate(p['rates'])} |"
                  for p in producers]
    if memory:
        lines += ["", f"project bulk workers' RSS (all processes) after warm-up "
                      f"{memory['before_mb']:.1f} MiB, after {memory['tasks']:,} more tasks "
                      f"{memory['after_mb']:.1f} MiB ({memory['change_pct']:+.1f}%), "
                      f"max sampled {memory['max_mb']:.1f} MiB"]
    return "\n".join(lines)


def raw_consumer(vhost: str, queue: str, prefetch: int) -> None:
    conn = common.amqp_connection(vhost)
    ch = conn.channel()
    ch.basic_qos(0, prefetch, False)

    def on_message(message):
        ch.basic_ack(message.delivery_tag)

    ch.basic_consume(queue, callback=on_message)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        conn.drain_events()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    consumer = sub.add_parser("_raw-consumer")
    consumer.add_argument("--vhost", required=True)
    consumer.add_argument("--queue", required=True)
    consumer.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument("--no-producers", action="store_true", help="skip the producer table")
    parser.add_argument("--memory-tasks", type=int, default=0,
                        help="also run this many tasks through the bulk workers and compare their RSS")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    if args.command == "_raw-consumer":
        raw_consumer(args.vhost, args.queue, args.prefetch)
        return 0
    common.bounded(args.tasks)
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    if args.memory_tasks:
        common.bounded(args.memory_tasks)
    systems = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"--only: unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    import logging

    logging.getLogger("pika").setLevel(logging.WARNING)
    # Celery reads CELERY_RESULT_BACKEND from the environment before any app's
    # own configuration; the tutorial app must run without one (the project
    # gets django-db from its settings anyway).
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    results = measure_systems([name for name in SYSTEMS if name in systems], args.tasks,
                              args.rounds, log)
    producers = [] if args.no_producers else measure_producers(args.tasks, args.rounds, systems, log)
    memory = measure_memory(args.memory_tasks, log) if args.memory_tasks else None
    print(render(results, producers, memory, args))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"results": results, "producers": producers, "memory": memory,
             "versions": common.versions(), "machine": common.machine(), "tasks": args.tasks,
             "rounds": args.rounds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
