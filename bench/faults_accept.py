"""Fault injection on the accept paths (run by bench/faults.py with the others).

* ``api-kill-web``: starts through ``POST /api/v1/tasks/`` from 8 client
  threads while gunicorn's worker processes are SIGKILLed at random points;
* ``api-broker-restart``: single starts and bulk starts
  (``POST /api/v1/tasks/bulk/``) while a throw-away RabbitMQ node restarts;
* ``bulk-cut-connection``: ``tasks_enqueue_bulk`` batches whose connection is
  cut at random points mid-batch; the caller sends again what
  ``BulkEnqueueError`` names (same task ids);
* ``kill-bulk-worker``: bulk-enqueued effect tasks on the bulk lane; one bulk
  worker (main process and pool) is SIGKILLed while it holds coalesced acks.

Accepted-but-unconfirmed API tasks are published again by the outbox sweeper;
the harness runs the sweeper's service itself with a 3 s bound (beat runs it
every 30 s with a 60 s bound) so a run does not wait a minute.

Counted independently of what the API or the harness believed: the effect
tables (``Effect``/``FaultAccount`` for effect tasks, ``ProbeRun`` rows, one
per token, for API starts), task results, and the queues (empty at the end,
nothing of the run dead-lettered).  An API answer is checked too: a task
refused with "nothing was sent" must never run (``untrue`` otherwise).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path

ACCEPT_SCENARIOS = ("api-kill-web", "api-broker-restart", "bulk-cut-connection",
                    "kill-bulk-worker")
PROBE = "queueworks.core.tasks.probe"
CLIENTS = 8
SWEEP_BOUND_SECONDS = 3.0
BULK_BATCH = 50


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


class AcceptHarness:
    def __init__(self, base, *, log=print):
        #: The Harness of bench/faults.py (system, broker node, counting).
        self.base = base
        self.system = base.system
        self.log = log

    # -- API clients ------------------------------------------------------------------
    def _api_starts(self, tokens: list[str], *, bulk_share: float = 0.0) -> dict:
        """POST every token (some in bulk batches); what each answer said."""
        import requests

        from bench.common import operator_token

        url = f"http://127.0.0.1:{self.system.web_port}/api/v1/tasks/"
        headers = {"Authorization": f"Token {operator_token('faults')}"}
        work = list(tokens)
        bulk_count = int(len(work) * bulk_share)
        batches = [work[i:min(i + BULK_BATCH, bulk_count)] for i in range(0, bulk_count, BULK_BATCH)]
        singles = work[bulk_count:]
        answers = {"accepted": {}, "refused": [], "unanswered": []}
        lock = threading.Lock()
        jobs = [("bulk", batch) for batch in batches] + [("one", [t]) for t in singles]
        random.shuffle(jobs)
        job_lock = threading.Lock()

        def client():
            session = requests.Session()
            while True:
                with job_lock:
                    if not jobs:
                        return
                    kind, batch = jobs.pop()
                try:
                    if kind == "bulk":
                        response = session.post(url + "bulk/", headers=headers, timeout=60, json={
                            "task": PROBE, "kwargs_list": [{"token": t} for t in batch]})
                    else:
                        response = session.post(url, headers=headers, timeout=60, json={
                            "task": PROBE, "kwargs": {"token": batch[0]}})
                except requests.RequestException:
                    with lock:
                        answers["unanswered"] += batch
                    session = requests.Session()
                    continue
                with lock:
                    if response.status_code == 202:
                        body = response.json()
                        ids = body.get("task_ids") or [body.get("task_id")]
                        answers["accepted"].update(zip(batch, ids, strict=True))
                    elif response.status_code == 503:
                        answers["refused"] += batch
                    else:
                        answers["unanswered"] += batch

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        self._clients = threads
        return answers

    def _clients_running(self) -> bool:
        return any(thread.is_alive() for thread in self._clients)

    def _wait_clients(self) -> None:
        for thread in self._clients:
            thread.join()

    # -- faults ----------------------------------------------------------------------
    def _kill_web_workers(self, kills: int) -> list[str]:
        done = []
        while len(done) < kills and self._clients_running():
            time.sleep(random.uniform(0.05, 0.5))
            master = int(self.system.rpc().getProcessInfo("web")["pid"])
            workers = _children(master)
            if not workers:
                continue
            victim = random.choice(workers)
            try:
                os.kill(victim, signal.SIGKILL)
                done.append(str(victim))
            except ProcessLookupError:
                pass
        return done

    # -- settling and counting -----------------------------------------------------------
    def _sweep_until_confirmed(self, task_ids: list[str], timeout: float = 180) -> int:
        from queueworks.taskapi.outbox import outbox_sweep
        from queueworks.taskapi.models import TaskRecord

        republished, deadline = 0, time.monotonic() + timeout
        while time.monotonic() < deadline:
            unconfirmed = TaskRecord.objects.filter(confirmed_at__isnull=True).count()
            if not unconfirmed:
                return republished
            time.sleep(SWEEP_BOUND_SECONDS)
            try:
                republished += outbox_sweep(older_than=SWEEP_BOUND_SECONDS).republished
            except Exception as exc:  # noqa: BLE001 - the broker may still be down
                self.log(f"  sweep failed ({exc}); again")
        self.log(f"  {TaskRecord.objects.filter(confirmed_at__isnull=True).count()} records "
                 "still unconfirmed")
        return republished

    def _wait_probes(self, tokens: list[str]) -> None:
        from queueworks.core.models import ProbeRun

        last, last_change = -1, time.monotonic()
        while True:
            done = ProbeRun.objects.filter(token__in=tokens).count()
            if done >= len(tokens):
                return
            if done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > self.base.stall_seconds:
                self.log(f"  no progress for {self.base.stall_seconds}s at {done}/{len(tokens)}")
                return
            time.sleep(0.25)

    def _queues_empty(self, names=("main_worker", "bulk", "heavy")) -> dict[str, int]:
        from tests.support import rabbit

        depths = {}
        for name in names:
            try:
                depths[name] = rabbit.queue_info(self.system.vhost, name)["messages"]
            except Exception:  # noqa: BLE001 - a throw-away node has no management API here
                depths[name] = _passive_depth(self.system.broker_url, name)
        return depths

    def _api_result(self, scenario: str, answers: dict, started: float, notes: list[str]):
        from django.db.models import Sum
        from django_celery_results.models import TaskResult

        from queueworks.core.models import ProbeRun
        from bench.faults_harness import ScenarioResult

        accepted = answers["accepted"]
        self._wait_probes(list(accepted))
        time.sleep(2)  # late duplicates of the sweep, if any, show up in the counts
        rows = ProbeRun.objects.filter(token__in=list(accepted))
        effects = rows.count()
        executed = rows.aggregate(total=Sum("deliveries"))["total"] or 0
        lost = len(accepted) - effects
        succeeded = TaskResult.objects.filter(task_id__in=list(accepted.values()),
                                              status="SUCCESS").count()
        untrue = ProbeRun.objects.filter(token__in=answers["refused"]).count()
        ran_unanswered = ProbeRun.objects.filter(token__in=answers["unanswered"]).count()
        depths = wait_empty(self._queues_empty)
        notes += [f"answers: {len(accepted)} accepted, {len(answers['refused'])} refused (503), "
                  f"{len(answers['unanswered'])} unanswered (of which ran: {ran_unanswered})",
                  f"results SUCCESS {succeeded}/{len(accepted)}",
                  f"executions beyond one per task: {executed - effects}",
                  f"queues at the end: {depths}"]
        if succeeded != len(accepted):
            lost = max(lost, len(accepted) - succeeded)
        return ScenarioResult(scenario, len(accepted), executed, effects, lost, 0,
                              time.monotonic() - started, notes, untrue=untrue)

    # -- scenarios -------------------------------------------------------------------------
    def run(self, scenario: str, tasks: int):
        return getattr(self, "run_" + scenario.replace("-", "_"))(tasks)

    def run_api_kill_web(self, tasks: int):
        started = time.monotonic()
        tokens = [f"kw-{uuid.uuid4().hex[:10]}-{i}" for i in range(tasks)]
        answers = self._api_starts(tokens, bulk_share=0.2)
        killed = self._kill_web_workers(max(2, tasks // 200))
        self._wait_clients()
        notes = [f"SIGKILLed web workers {', '.join(killed)}"]
        self.system.wait_running(["web"], timeout=60)
        notes.append(f"outbox sweeps re-published {self._sweep_until_confirmed([])}")
        return self._api_result("api-kill-web", answers, started, notes)

    def run_api_broker_restart(self, tasks: int):
        started = time.monotonic()
        tokens = [f"br-{uuid.uuid4().hex[:10]}-{i}" for i in range(tasks)]
        answers = self._api_starts(tokens, bulk_share=0.5)
        time.sleep(random.uniform(0.2, 1.0))
        self.base.rabbit_node.restart_app(down_seconds=3)
        self._wait_clients()
        notes = [f"rabbitmqctl stop_app; sleep 3; start_app on {self.base.rabbit_node.name}"]
        self.base.wait_healthy()
        notes.append(f"outbox sweeps re-published {self._sweep_until_confirmed([])}")
        return self._api_result("api-broker-restart", answers, started, notes)

    def _effect_result(self, scenario: str, run_id: str, tokens, started, notes):
        from bench.faults_harness import ScenarioResult

        self.base.wait_for_effects(run_id, len(tokens))
        depths = wait_empty(self._queues_empty)
        self.base.wait_healthy()
        executed, balance, effects = self.base.counts(run_id)
        lost = len(self.base.missing_tokens(run_id, tokens))
        notes.append(f"queues at the end: {depths}")
        return ScenarioResult(scenario, len(tokens), executed, balance, lost, balance - effects,
                              time.monotonic() - started, notes, run_id)

    def run_bulk_cut_connection(self, tasks: int):
        from queueworks.dispatch.services import BulkEnqueueError, tasks_enqueue_bulk
        from apps.testing.services import fault_account_open
        from apps.testing.tasks import fault_effect
        from projectname.celery import app

        started, run_id = time.monotonic(), uuid.uuid4().hex[:12]
        fault_account_open(run_id=run_id)
        tokens = [f"t{i}" for i in range(tasks)]
        batch_size = max(50, tasks // 4)
        cuts = resent = 0
        for start in range(0, tasks, batch_size):
            batch = tokens[start:start + batch_size]
            ids = [str(uuid.uuid4()) for _ in batch]
            kwargs = {i: {"run_id": run_id, "token": t} for i, t in zip(ids, batch, strict=True)}
            # The connection the batch will use (the pool hands back the last
            # one); cut right after its first write of this batch.
            with app.pool.acquire(block=True) as connection:
                connection.ensure_connection(max_retries=3)
                raw = connection.connection
            cutter = threading.Thread(target=_cut_after_first_write, args=(raw,))
            cutter.start()
            todo = ids
            while todo:
                try:
                    tasks_enqueue_bulk(task=fault_effect, task_ids=todo,
                                       kwargs_list=[kwargs[i] for i in todo])
                    todo = []
                except BulkEnqueueError as exc:
                    cuts += 1
                    self.log(f"  batch cut: {exc}")
                    # What it names is what may be missing: send those again.
                    todo = exc.task_ids
                    resent += len(todo)
                    time.sleep(0.2)
            cutter.join()
        # A cut that came after its batch left the pooled connection dead:
        # drop its transport before anyone else (Celery's control) uses it.
        with app.pool.acquire(block=True) as connection:
            connection.collect()
        notes = [f"{cuts} batches cut, {resent} messages sent again"]
        return self._effect_result("bulk-cut-connection", run_id, tokens, started, notes)

    def run_kill_bulk_worker(self, tasks: int):
        from queueworks.dispatch.services import tasks_enqueue_bulk
        from apps.testing.services import fault_account_open
        from apps.testing.tasks import fault_effect

        started, run_id = time.monotonic(), uuid.uuid4().hex[:12]
        fault_account_open(run_id=run_id)
        tokens = [f"t{i}" for i in range(tasks)]
        # Work enough that the kill lands while acks are held back for a batch.
        for start in range(0, tasks, 500):
            tasks_enqueue_bulk(task=fault_effect, queue="bulk", kwargs_list=[
                {"run_id": run_id, "token": t, "work_ms": 2} for t in tokens[start:start + 500]])
        injected = []

        def maybe_inject(effects):
            if not injected and effects >= max(1, tasks // 4):
                pid = int(self.system.rpc().getProcessInfo("bulk_worker_1")["pid"])
                victims = [pid, *_children(pid)]
                for victim in victims:
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                injected.append(f"kill -9 bulk_worker_1 {victims} at {effects} effects")

        self.base.wait_for_effects(run_id, tasks, on_progress=maybe_inject)
        return self._effect_result("kill-bulk-worker", run_id, tokens, started,
                                   injected or ["run finished before the kill"])


def _cut_after_first_write(raw_connection, timeout: float = 10.0) -> None:
    """Shut the socket down as soon as py-amqp counts a write on it."""
    sent, deadline = raw_connection.bytes_sent, time.monotonic() + timeout
    while raw_connection.bytes_sent == sent and time.monotonic() < deadline:
        time.sleep(0.0005)
    try:
        raw_connection.sock.shutdown(2)
    except (OSError, AttributeError):
        pass


def _passive_depth(broker_url: str, queue: str) -> int:
    from kombu import Connection

    with Connection(broker_url) as connection:
        return connection.default_channel.queue_declare(queue, passive=True).message_count


def wait_empty(depths_of, timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        depths = depths_of()
        if not any(depths.values()) or time.monotonic() > deadline:
            return depths
        time.sleep(0.5)
