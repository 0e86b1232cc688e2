"""The fault-injection harness: the system it runs against and its scenarios.

``workers_only_system`` is a supervisord running only the worker programs (the
committed deploy/conf.d files); ``Harness`` sends effect tasks, injects one
fault and counts what arrived (bench/faults.py is its command line).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.rabbit_node import RabbitNode
from projectname.topology import TOPOLOGY

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Every worker program of the topology: after a fault, every queue must have
# its consumers again (the bulk lane included).
WORKER_PROGRAMS = tuple(worker.name for worker in TOPOLOGY.workers)


def workers_only_system(*, run_dir: Path, broker_url: str, database_url: str, vhost: str = "/",
                        extra_programs: tuple[str, ...] = (), env: dict | None = None):
    """A LiveSystem (tests/support/live.py) whose supervisord runs only the workers
    (and ``extra_programs``, e.g. ``("web",)``)."""
    from queueworks.core.supervisor import render_supervisord_conf
    from tests.support.live import LiveSystem, build_env, free_port, wait_for

    class WorkersOnlySystem(LiveSystem):
        def start(self) -> None:
            include = " ".join(str(PROJECT_ROOT / "deploy" / "conf.d" / f"{name}.conf")
                               for name in WORKER_PROGRAMS + extra_programs)
            self.conf.write_text(render_supervisord_conf(run_dir=str(self.run_dir), include=include))
            self.process = subprocess.Popen(
                [self.bin("supervisord"), "--nodaemon", "-c", str(self.conf)],
                env=self.env, cwd=PROJECT_ROOT,
                stdout=open(self.run_dir / "supervisord.out", "ab"), stderr=subprocess.STDOUT,
            )
            wait_for(lambda: (self.run_dir / "supervisor.sock").exists(), 20,
                     message="supervisor socket")
            self.wait_running(list(WORKER_PROGRAMS + extra_programs), timeout=90)
            self.wait_workers_ready(list(WORKER_PROGRAMS), timeout=90)

        def wait_workers_ready(self, worker_names, timeout: float = 60) -> None:
            # The broker's own consumer counts (manage.py liveness), on this
            # system's broker: every queue of these workers has its consumer.
            from queueworks.reliability.services import queues_liveness

            names = set(worker_names)

            def consuming():
                try:
                    report = queues_liveness(broker_url=self.broker_url)
                except Exception:  # noqa: BLE001 - broker still starting
                    return False
                return all(q.ok for q in report if names & set(q.workers))

            wait_for(consuming, timeout, interval=0.5, message=f"workers consuming: {names}")

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "log").mkdir(exist_ok=True)
    web_port, flower_port = free_port(), free_port()
    return WorkersOnlySystem(
        run_dir=run_dir, vhost=vhost, broker_url=broker_url, database_url=database_url,
        env=dict(build_env(run_dir=run_dir, broker_url=broker_url, database_url=database_url,
                           web_port=web_port, flower_port=flower_port), **(env or {})),
        web_port=web_port, flower_port=flower_port,
    )


@dataclass
class ScenarioResult:
    scenario: str
    sent: int
    executed: int
    effects: int
    lost: int
    duplicated: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    run_id: str = ""
    #: Answers proved false: a start refused with "nothing was sent" that ran.
    untrue: int = 0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.untrue == 0

    def row(self) -> str:
        return (f"| {self.scenario} | {self.sent} | {self.executed} | {self.effects} | "
                f"{self.lost} | {self.duplicated} | {self.untrue} | {self.seconds:.1f} s |")


TABLE_HEADER = ("| scenario | sent | executed | effects applied | lost | duplicated effects "
                "| untrue answers | time |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|")


class Harness:
    """Runs scenarios against one system (a LiveSystem-like object)."""

    def __init__(self, system, *, rabbit_node: RabbitNode | None = None, work_ms: int = 0,
                 heavy_every: int = 10, fault_at: float = 0.25, stall_seconds: float = 120,
                 node_loss=None, log=print):
        self.system = system
        self.rabbit_node = rabbit_node
        self.work_ms = work_ms
        self.heavy_every = heavy_every
        self.fault_at = fault_at
        self.stall_seconds = stall_seconds
        # broker-node-loss: a callable that takes one cluster node away and
        # says how (the cluster's owner knows which node and how to kill it).
        self.node_loss = node_loss
        self.log = log

    # -- publishing ---------------------------------------------------------------
    def _connection(self):
        from kombu import Connection

        from projectname.celery import app

        return Connection(self.system.broker_url,
                          transport_options=app.conf.broker_transport_options)

    def send(self, run_id: str, tokens: list[str]) -> int:
        """Publish one effect task per token (every n-th to the heavy worker).

        A publish that fails even after Celery's retry policy (broker down for
        longer) raises to us, the caller: we wait and publish that token again.
        """
        from kombu.exceptions import OperationalError

        from apps.testing.tasks import fault_effect, fault_effect_heavy
        from projectname.celery import app

        sent = 0
        with self._connection() as connection:
            producer = app.amqp.Producer(connection)
            for index, token in enumerate(tokens):
                task = fault_effect_heavy if self.heavy_every and index % self.heavy_every == 0 \
                    else fault_effect
                while True:
                    try:
                        task.apply_async((run_id, token), {"work_ms": self.work_ms} if self.work_ms else {},
                                         producer=producer)
                        sent += 1
                        break
                    except OperationalError as exc:
                        self.log(f"  publish of {token} failed ({exc}); retrying")
                        time.sleep(1)
                        connection.ensure_connection(max_retries=30)
                        producer = app.amqp.Producer(connection)
        return sent

    def publish_raw(self, *, queue: str, body: bytes, headers: dict,
                    content_type: str = "application/json") -> None:
        with self._connection() as connection:
            channel = connection.default_channel
            message = channel.prepare_message(body, content_type=content_type,
                                              content_encoding="utf-8", headers=headers,
                                              properties={"delivery_mode": 2})
            channel.basic_publish(message, exchange=queue, routing_key=queue)

    # -- counting -----------------------------------------------------------------
    @staticmethod
    def counts(run_id: str) -> tuple[int, int, int]:
        """(executions, balance, distinct effect keys)."""
        from queueworks.reliability.models import Effect
        from apps.testing.models import FaultAccount, FaultExecution

        executed = FaultExecution.objects.filter(run_id=run_id).count()
        balance = FaultAccount.objects.get(run_id=run_id).balance
        effects = Effect.objects.filter(key__startswith=f"fault:{run_id}:").count()
        return executed, balance, effects

    def wait_for_effects(self, run_id: str, expected: int, *, on_progress=None) -> None:
        last, last_change = -1, time.monotonic()
        while True:
            _, _, effects = self.counts(run_id)
            if on_progress:
                on_progress(effects)
            if effects >= expected:
                return
            if effects != last:
                last, last_change = effects, time.monotonic()
            elif time.monotonic() - last_change > self.stall_seconds:
                self.log(f"  no progress for {self.stall_seconds}s at {effects}/{expected}")
                return
            time.sleep(0.25)

    def missing_tokens(self, run_id: str, tokens: list[str]) -> list[str]:
        from queueworks.reliability.models import Effect

        done = {key.rsplit(":", 1)[1] for key in Effect.objects.filter(
            key__startswith=f"fault:{run_id}:").values_list("key", flat=True)}
        return [token for token in tokens if token not in done]

    def dead_letter_ids(self) -> set[str]:
        from queueworks.reliability.services import dead_letters_list

        return {letter.id for letter in dead_letters_list(limit=10_000,
                                                          broker_url=self.system.broker_url)}

    def wait_healthy(self) -> None:
        self.system.wait_running(list(WORKER_PROGRAMS), timeout=120)
        self.system.wait_workers_ready(list(WORKER_PROGRAMS), timeout=120)

    # -- faults ---------------------------------------------------------------------
    def _main_pid(self, program: str = "main_worker") -> int:
        return int(self.system.rpc().getProcessInfo(program)["pid"])

    def _children(self, pid: int) -> list[int]:
        path = Path(f"/proc/{pid}/task/{pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def fault_kill_pool_process(self) -> str:
        children = self._children(self._main_pid())
        victim = random.choice(children)
        os.kill(victim, signal.SIGKILL)
        return f"kill -9 pool process {victim}"

    def fault_kill_worker(self) -> str:
        pid = self._main_pid()
        children = self._children(pid)
        # The whole worker: main process and its pool (as the OOM killer or a
        # crashed host would), then supervisor starts a new one.
        for victim in [pid, *children]:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return f"kill -9 main_worker {pid} and pool {children}"

    def fault_restart_workers(self) -> str:
        result = self.system.ctl("restart", *WORKER_PROGRAMS)
        return f"supervisorctl restart {' '.join(WORKER_PROGRAMS)}: {result.stdout.strip()!r}"

    def fault_broker_restart(self) -> str:
        if self.rabbit_node is None:
            raise RuntimeError("broker-restart needs a throw-away RabbitMQ node")
        self.rabbit_node.restart_app(down_seconds=3)
        return f"rabbitmqctl -n {self.rabbit_node.name} stop_app; sleep 3; start_app"

    def fault_broker_node_loss(self) -> str:
        if self.node_loss is None:
            raise RuntimeError("broker-node-loss needs a cluster and a way to kill one of its nodes")
        return self.node_loss()

    # -- scenario runner --------------------------------------------------------------
    def run(self, scenario: str, tasks: int) -> ScenarioResult:
        from apps.testing.services import fault_account_open

        from bench.faults_accept import ACCEPT_SCENARIOS, AcceptHarness

        if scenario in ACCEPT_SCENARIOS:
            return AcceptHarness(self, log=self.log).run(scenario, tasks)

        run_id = uuid.uuid4().hex[:12]
        fault_account_open(run_id=run_id)
        tokens = [f"t{i}" for i in range(tasks)]
        notes: list[str] = []
        started = time.monotonic()
        special_sent, special_lost = 0, 0

        fault = {
            "kill-pool-process": self.fault_kill_pool_process,
            "kill-worker": self.fault_kill_worker,
            "restart-workers": self.fault_restart_workers,
            "broker-restart": self.fault_broker_restart,
            "broker-node-loss": self.fault_broker_node_loss,
        }.get(scenario)

        specials = {}
        from projectname.celery import app

        connection = self._connection()
        producer = app.amqp.Producer(connection)
        if scenario == "time-limits":
            from apps.testing.tasks import fault_sleep

            specials["soft"] = fault_sleep.apply_async((run_id, "soft", 8.0), producer=producer)
            specials["hard"] = fault_sleep.apply_async((run_id, "hard", 30.0, True),
                                                       producer=producer)
        elif scenario == "poison-message":
            specials["undecodable"] = str(uuid.uuid4())
            self.publish_raw(queue="main_worker", body=b"\xff\x00 this is not JSON",
                             headers={"task": "apps.testing.tasks.fault_effect",
                                      "id": specials["undecodable"], "lang": "py"})
            specials["unknown-task"] = str(uuid.uuid4())
            self.publish_raw(queue="main_worker", body=b'[[], {}, {}]',
                             headers={"task": "apps.nowhere.tasks.missing",
                                      "id": specials["unknown-task"], "lang": "py"})
        elif scenario == "crash-every-delivery":
            from apps.testing.tasks import fault_crash

            specials["crash"] = fault_crash.apply_async((run_id, "crash"), producer=producer)
        connection.release()
        special_sent = len(specials)

        sent = self.send(run_id, tokens)
        if fault:
            injected = []

            def maybe_inject(effects):
                if not injected and effects >= max(1, int(tasks * self.fault_at)):
                    injected.append(fault())
                    self.log(f"  fault: {injected[0]}")

            self.wait_for_effects(run_id, tasks, on_progress=maybe_inject)
            if not injected:
                notes.append("run finished before the fault could be injected")
            notes += injected
        else:
            self.wait_for_effects(run_id, tasks)

        # Special messages must end where they belong.
        if scenario == "time-limits":
            special_lost += self._expect_failure(specials["soft"], "SoftTimeLimitReached", notes)
            special_lost += self._expect_failure(specials["hard"], "TimeLimitExceeded", notes)
        elif scenario in ("poison-message", "crash-every-delivery"):
            wanted = {key: (value.id if hasattr(value, "id") else value)
                      for key, value in specials.items()}
            deadline = time.monotonic() + 120
            while True:
                present = self.dead_letter_ids()
                missing = [k for k, v in wanted.items() if v not in present]
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(1)
            special_lost += len(missing)
            notes.append(f"dead-lettered: {sorted(set(wanted) - set(missing))}"
                         + (f", MISSING: {missing}" if missing else ""))
            if scenario == "crash-every-delivery":
                from queueworks.reliability.models import TaskDelivery

                delivery = TaskDelivery.objects.filter(task_id=wanted["crash"]).first()
                notes.append(f"crash task deliveries: {delivery.deliveries if delivery else 0}")

        self.wait_healthy()
        seconds = time.monotonic() - started
        executed, balance, effects = self.counts(run_id)
        lost = len(self.missing_tokens(run_id, tokens)) + special_lost
        return ScenarioResult(scenario, sent + special_sent, executed, balance, lost,
                              balance - effects, seconds, notes, run_id)

    def _expect_failure(self, result, exc_name: str, notes: list[str]) -> int:
        deadline = time.monotonic() + 120
        while result.state not in ("FAILURE", "SUCCESS") and time.monotonic() < deadline:
            time.sleep(0.5)
        text = f"{result.state} {type(result.result).__name__}: {result.result}"
        notes.append(f"{exc_name}: {text}")
        return 0 if result.state == "FAILURE" and exc_name in (
            type(result.result).__name__ + str(result.result)) else 1
