"""The bulk lane's fast paths against real workers and the real broker.

Some of these need a bulk worker nobody else talks to: no Flower (it turns
task events on every few seconds), no gossip, no other worker's broadcasts.
``lone_worker`` starts one on a private vhost, with the session's database
and environment, started as supervisor starts ``bulk_worker_1`` plus the
flags under test.
"""

from __future__ import annotations

import json
from functools import partial
import os
import pickle
import subprocess
import time
import uuid

import pytest
import requests
from kombu import Connection, Consumer
from kombu.common import maybe_declare

from tests.support import rabbit
from tests.support.live import PROJECT_ROOT, wait_for

PROBE = "queueworks.core.tasks.probe"


def publish(broker_url: str, queue: str, task: str, kwargs: dict, *,
            content_encoding: str = "utf-8", **options) -> str:
    """One Celery protocol 2 message, as ``apply_async`` builds it, published
    with the given content encoding label (the body is UTF-8 JSON either way,
    non-ASCII characters unescaped as many producers send them)."""
    from projectname.celery import app

    task_id = str(uuid.uuid4())
    message = app.amqp.as_task_v2(task_id, task, args=(), kwargs=kwargs, **options)
    with Connection(broker_url) as connection:
        maybe_declare(app.amqp.queues[queue], connection.default_channel)
        connection.Producer().publish(
            json.dumps(message.body, ensure_ascii=False).encode("utf-8"), exchange="",
            routing_key=queue,
            headers=message.headers, content_type="application/json",
            content_encoding=content_encoding, delivery_mode=2, correlation_id=task_id,
        )
    return task_id


def _probe_tokens(tokens):
    from queueworks.core.models import ProbeRun

    rows = {row.token: row for row in ProbeRun.objects.filter(
        token__in=tokens, finished_at__isnull=False)}
    return rows if len(rows) == len(tokens) else None


def _settled(vhost: str, queue: str):
    info = rabbit.queue_info(vhost, queue)
    return info if info.get("messages") == 0 and info.get("messages_unacknowledged") == 0 \
        else None


class LoneWorker:
    def __init__(self, env: dict, vhost: str, run_dir):
        self.vhost, self.broker_url = vhost, rabbit.broker_url(vhost)
        self.node = f"lone-{uuid.uuid4().hex[:6]}@{os.uname().nodename}"
        self.env = {**env, "CELERY_BROKER_URL": self.broker_url,
                    "CELERY_CUSTOM_WORKER_POOL": "queueworks.dispatch.pool:SoloPool",
                    "CELERY_WORKER_SEND_TASK_EVENTS": "0", "PYTHONPATH": str(PROJECT_ROOT),
                    # Without a lease a bulk worker declines enable_events
                    # (queueworks/core/events.py); with one it follows it.
                    "WORKER_TASK_EVENTS_LEASE": "600"}
        self.log = run_dir / "lone_worker.log"
        self.process = None

    def start(self) -> None:
        from tests.support.live import LiveSystem

        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [LiveSystem.bin("celery"), "-A", "projectname", "worker", "--queues=bulk",
             f"--hostname={self.node}", "--pool=custom", "--concurrency=1",
             "--prefetch-multiplier=128", "--without-gossip", "--without-mingle",
             "--soft-time-limit=30", "--time-limit=60", "--loglevel=INFO"],
            env=self.env, cwd=PROJECT_ROOT, stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT)
        wait_for(self._consuming, 90, interval=0.2, message="the lone worker consuming")

    def _consuming(self) -> bool:
        try:
            return bool(rabbit.queue_info(self.vhost, "bulk").get("consumers"))
        except requests.HTTPError:  # the worker has not declared its queue yet
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def control(self, command: str, *arguments: str) -> list:
        """``celery control <command>`` for this worker, as an operator (or
        Flower, through the same broadcast) sends it; the replies."""
        from tests.support.live import LiveSystem

        result = subprocess.run(
            [LiveSystem.bin("celery"), "-A", "projectname", "control", command, *arguments,
             f"--destination={self.node}", "--json", "--timeout=10"],
            env=self.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    def publish(self, task: str, kwargs: dict, **options) -> str:
        return publish(self.broker_url, "bulk", task, kwargs, **options)


@pytest.fixture(scope="module")
def lone_vhost():
    vhost = rabbit.create_vhost("lone")
    yield vhost
    rabbit.delete_vhost(vhost)


@pytest.fixture(scope="module")
def lone_worker(django_db_setup, lone_vhost, tmp_path_factory):
    """The session's test database and environment, its own vhost: no need
    for the whole live system."""
    from django.db import connection

    from tests.conftest import _database_url
    from tests.support.live import build_env, free_port

    run_dir = tmp_path_factory.mktemp("lone")
    env = build_env(run_dir=run_dir, broker_url=rabbit.broker_url(lone_vhost),
                    database_url=_database_url(connection.settings_dict),
                    web_port=free_port(), flower_port=free_port())
    worker = LoneWorker(env, lone_vhost, run_dir)
    yield worker
    worker.stop()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_gossipless_bulk_worker_drains_its_backlog_promptly(lone_worker):
    """The backlog arrives with consume-ok, before the event loop runs: no
    frame may wait for the next heartbeat (60 s) to be processed."""
    tokens = [f"backlog-{uuid.uuid4().hex[:8]}-{i}" for i in range(50)]
    for token in tokens:
        lone_worker.publish(PROBE, {"token": token})
    lone_worker.start()
    started = time.monotonic()
    wait_for(lambda: _probe_tokens(tokens), 20, interval=0.2,
             message="all 50 backlog tasks run (a stall waits for a heartbeat, ~60 s)")
    wait_for(lambda: _settled(lone_worker.vhost, "bulk"), 10, interval=0.2,
             message="every backlog message acknowledged")
    assert time.monotonic() - started < 20


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_stamped_revoke_is_honoured_on_the_bulk_lane(lone_worker):
    from django_celery_results.models import TaskResult

    lone_worker.start()
    stamp = f"batch-{uuid.uuid4().hex[:8]}"
    replies = lone_worker.control("revoke_by_stamped_headers", f"batch={stamp}")
    assert replies, "the worker acknowledged the revoke"
    token = f"stamped-{uuid.uuid4().hex[:8]}"
    revoked_id = lone_worker.publish(PROBE, {"token": token}, stamped_headers=["batch"],
                                     batch=stamp)
    other = f"unstamped-{uuid.uuid4().hex[:8]}"
    lone_worker.publish(PROBE, {"token": other}, stamped_headers=["batch"], batch="another")
    wait_for(lambda: _probe_tokens([other]), 30, interval=0.2, message="the other task ran")
    row = wait_for(lambda: TaskResult.objects.filter(task_id=revoked_id).first(), 30,
                   interval=0.2, message="the revoked task's state stored")
    assert row.status == "REVOKED"
    assert _probe_tokens([token]) is None
    wait_for(lambda: _settled(lone_worker.vhost, "bulk"), 10, interval=0.2,
             message="the revoked message acknowledged")


def _task_events(broker_url: str, action):
    """The task-succeeded events' task ids while ``action()`` runs."""
    from projectname.celery import app

    seen: list[str] = []
    with Connection(broker_url) as connection:
        receiver = app.events.Receiver(connection, handlers={
            "task-succeeded": lambda event: seen.append(event["uuid"])})
        channel = connection.channel()
        [consumer] = receiver.get_consumers(partial(Consumer, channel), channel)
        with consumer:
            expected = action()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not set(expected) <= set(seen):
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
    return expected, seen


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_task_events_follow_enable_and_disable_at_runtime(lone_worker):
    lone_worker.start()

    def run_batch(label):
        def action():
            ids = [lone_worker.publish(PROBE, {"token": f"{label}-{uuid.uuid4().hex[:8]}-{i}"})
                   for i in range(10)]
            wait_for(lambda: _settled(lone_worker.vhost, "bulk"), 30, interval=0.2,
                     message=f"{label} batch acknowledged")
            return ids
        return _task_events(lone_worker.broker_url, action)

    ids, seen = run_batch("quiet")
    assert not set(ids) & set(seen), "task events while they are off"
    assert lone_worker.control("enable_events")
    ids, seen = run_batch("loud")
    assert set(ids) <= set(seen), f"{len(set(ids) - set(seen))} of 10 tasks sent no event"
    assert lone_worker.control("disable_events")
    ids, seen = run_batch("quiet-again")
    assert not set(ids) & set(seen), "task events after they were disabled"


def _probe_rows_ending(suffixes):
    from queueworks.core.models import ProbeRun

    rows = {}
    for suffix in suffixes:
        row = ProbeRun.objects.filter(token__endswith=suffix, finished_at__isnull=False).first()
        if row is None:
            return None
        rows[suffix] = row
    return rows


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("encoding", ["binary", "latin-1"])
def test_a_body_labelled_with_another_encoding_runs_alike_on_both_lanes(
        live_system, lone_worker, encoding):
    """Whatever Celery's path makes of a body labelled with another encoding
    (py-amqp decodes the body with a codec it knows, ``latin-1``; kombu's
    JSON codec reads UTF-8), the bulk lane's fast path makes the same: the
    task runs on both lanes with the same arguments, and is never
    dead-lettered by one of them only."""
    lone_worker.start()
    run = uuid.uuid4().hex[:8]
    suffixes = {"main_worker": f"main-{run}", "bulk": f"bulk-{run}"}
    publish(live_system.broker_url, "main_worker", PROBE,
            {"token": f"enc-{encoding}-é€-{suffixes['main_worker']}"},
            content_encoding=encoding)
    lone_worker.publish(PROBE, {"token": f"enc-{encoding}-é€-{suffixes['bulk']}"},
                        content_encoding=encoding)
    rows = wait_for(lambda: _probe_rows_ending(list(suffixes.values())), 60, interval=0.3,
                    message="both lanes ran the task")
    main, bulk = rows[suffixes["main_worker"]], rows[suffixes["bulk"]]
    assert (main.queue, bulk.queue) == ("main_worker", "bulk")
    assert bulk.hostname == lone_worker.node
    assert bulk.token.replace(suffixes["bulk"], "") == main.token.replace(
        suffixes["main_worker"], "")
    if encoding == "binary":  # not a codec: py-amqp leaves the bytes, kombu reads UTF-8
        assert bulk.token == f"enc-binary-é€-{suffixes['bulk']}"


# -- the lean path is the project's Task.Strategy ----------------------------------------

NOOP = "apps.testing.tasks.noop"
STOCK_NOOP = "apps.testing.tasks.noop_stock_strategy"  # Celery's default Task.Strategy


def _log_paths(worker: LoneWorker, task_ids):
    """For each task id that finished: "lean" when the worker logged no
    "received" line for it (Celery's strategy logs one for every message it
    takes, the lean path none), else "celery"; None until all finished."""
    log = worker.log.read_text(errors="replace")
    if not all(f"[{task_id}] succeeded" in log for task_id in task_ids):
        return None
    return {task_id: "celery" if f"[{task_id}] received" in log else "lean"
            for task_id in task_ids}


def _run_on_both_strategies(worker: LoneWorker, label: str, count: int = 10):
    lean_ids = [worker.publish(NOOP, {"n": i}) for i in range(count)]
    stock_ids = [worker.publish(STOCK_NOOP, {"n": i}) for i in range(count)]
    paths = wait_for(lambda: _log_paths(worker, lean_ids + stock_ids), 60, interval=0.3,
                     message=f"{label}: every task logged its success")
    wait_for(lambda: _settled(worker.vhost, "bulk"), 30, interval=0.2,
             message=f"{label}: every message acknowledged")
    return {paths[i] for i in lean_ids}, {paths[i] for i in stock_ids}


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_only_the_lean_strategy_runs_messages_inline(lone_worker):
    """The bulk worker runs the project's tasks inline through their
    ``Task.Strategy``; a task that keeps Celery's default strategy is never
    run inline, on the same worker, in the same batch."""
    lone_worker.start()
    assert _run_on_both_strategies(lone_worker, "first run") == ({"lean"}, {"celery"})


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_the_lean_path_survives_a_connection_the_broker_closed(lone_worker):
    """Strategies are built once per consumer start; the runner (and its
    channel) is looked up per message, so after a reconnection plain messages
    run inline again, on the new channel, and every ack reaches the broker."""
    lone_worker.start()
    assert _run_on_both_strategies(lone_worker, "before") == ({"lean"}, {"celery"})
    log_before = lone_worker.log.read_text(errors="replace").count("Lean path on")
    assert log_before
    closed = set(rabbit.vhost_connections(lone_worker.vhost))
    assert closed, "the worker's connections are listed"
    for name in closed:
        try:
            rabbit.close_connection(name, reason="the lean path's reconnection test")
        except requests.HTTPError:  # a publisher's connection, closed meanwhile
            pass
    wait_for(lambda: set(rabbit.vhost_connections(lone_worker.vhost)) - closed
             and lone_worker.log.read_text(errors="replace").count("Lean path on") > log_before,
             60, interval=0.3, message="the worker reconnected and started the lean path")
    wait_for(lambda: rabbit.queue_info(lone_worker.vhost, "bulk").get("consumers"), 60,
             interval=0.3, message="the worker consuming again")
    assert _run_on_both_strategies(lone_worker, "after reconnecting") == ({"lean"}, {"celery"})


def publish_raw(broker_url: str, task: str, body: bytes, *,
                content_type: str = "application/json", **options) -> str:
    """A task message for the bulk queue with this body, as is."""
    from projectname.celery import app

    task_id = str(uuid.uuid4())
    message = app.amqp.as_task_v2(task_id, task, args=(), kwargs={}, **options)
    with Connection(broker_url) as connection:
        maybe_declare(app.amqp.queues["bulk"], connection.default_channel)
        connection.Producer().publish(
            body, exchange="", routing_key="bulk", headers=message.headers,
            content_type=content_type, content_encoding="utf-8", delivery_mode=2)
    return task_id


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_poison_bodies_are_dead_lettered_whichever_path_would_take_them(lone_worker):
    """A body that does not decode is rejected without requeue (RabbitMQ
    dead-letters it): a plain message (the lean path decodes it), one the lean
    strategy hands to Celery (a retry), and one of a task with Celery's
    default strategy (the consumer checks it).  A pickled body decodes, but
    only JSON is accepted: the worker must refuse it unopened."""

    from projectname.topology import DEAD_LETTER_QUEUE

    lone_worker.start()
    before = rabbit.queue_info(lone_worker.vhost, DEAD_LETTER_QUEUE).get("messages", 0)
    ids = [publish_raw(lone_worker.broker_url, NOOP, b"{not json"),
           publish_raw(lone_worker.broker_url, NOOP, b"{not json", retries=1),
           publish_raw(lone_worker.broker_url, STOCK_NOOP, b"{not json"),
           publish_raw(lone_worker.broker_url, STOCK_NOOP, pickle.dumps(((), {}, {})),
                       content_type="application/x-python-serialize")]
    wait_for(lambda: rabbit.queue_info(lone_worker.vhost, DEAD_LETTER_QUEUE).get(
        "messages", 0) - before == 4, 30, interval=0.3,
        message="four poison messages dead-lettered")
    log = lone_worker.log.read_text(errors="replace")
    assert log.count("Poison message rejected to the dead-letter queue") >= 4
    assert "ContentDisallowed" in log
    assert all(task_id in log for task_id in ids)
    wait_for(lambda: _settled(lone_worker.vhost, "bulk"), 10, interval=0.2,
             message="the bulk queue holds nothing")
    # The worker goes on consuming on the lean path.
    assert _run_on_both_strategies(lone_worker, "after poison") == ({"lean"}, {"celery"})
