"""The systems bench/throughput.py compares, and the producers that feed them.

Each system runs its workers in its own throw-away vhost: ``Raw`` (a py-amqp
consumer, bench/throughput.py's ``_raw-consumer``), ``CeleryTutorial``,
``Dramatiq``, ``Project`` (the bulk lane under supervisord from the committed
deploy/conf.d files) and ``ProjectMain`` (the user-facing lane, the same way).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench import common
from bench.common import PROJECT_ROOT

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
        self.command = [sys.executable, str(Path(__file__).with_name("throughput.py")),
                        "_raw-consumer", "--vhost", self.vhost, "--queue", self.queue]

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
        from queueworks.dispatch.services import tasks_enqueue_bulk
        from apps.testing.tasks import noop
        from projectname.celery import app

        use_broker(app, self.broker_url)
        self.app, self.noop, self.enqueue = app, noop, tasks_enqueue_bulk
        self.supervisord: subprocess.Popen | None = None
        # Declare the queue with the topology's arguments, as the workers will.
        with app.connection_for_write() as connection:
            app.amqp.queues[self.queue](connection.default_channel).declare()
        # The type the broker really made it (TASK_QUEUE_TYPE: classic or quorum).
        self.queue_type = common.rabbit.queue_info(self.vhost, self.queue)["type"]
        self.description = f"{self.description} [{self.queue_type} queue]"

    def _rpc(self):
        import xmlrpc.client

        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.run_dir}/supervisor.sock")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def start_workers(self):
        if self.supervisord is None:
            from queueworks.core.supervisor import render_supervisord_conf

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

    from queueworks.dispatch.compat.celery import broker_pool, replace_broker_pool

    if broker_pool(app) is not None:
        broker_pool(app).force_close_all()
    replace_broker_pool(app, None)
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


class ProjectDjangoTask(Project):
    """The bulk lane running the same noop written with Django's @task
    (queueworks/tasks_backend): the cost of the Django task API's wrapper."""

    name = "django-task"
    description = "this project: the bulk lane as deployed, the noop written as a Django @task"

    def setup(self):
        super().setup()
        # The live tests' signal log would add two file writes per task.
        self.system_env.pop("DJANGO_TASK_SIGNALS_LOG", None)
        from apps.testing.django_tasks import noop
        from queueworks.tasks_backend.worker import celery_task_for

        self.noop = celery_task_for(self.app, noop)


CLASSES = {"raw": Raw, "celery": CeleryTutorial, "dramatiq": Dramatiq, "project": Project,
           "main": ProjectMain, "django-task": ProjectDjangoTask}

