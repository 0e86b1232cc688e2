"""The user-facing lane through the real broker and the real main_worker:
results only for tasks that keep them, and its prefetch headroom."""

from __future__ import annotations

import uuid

import pytest
from django_celery_results.models import TaskResult

from projectname.celery import app
from projectname.topology import TOPOLOGY
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _finished_in_log(live_system, task_id: str, outcome: str) -> bool:
    return f"[{task_id}] {outcome}" in live_system.log_tail("main_worker", lines=2000)


def test_a_fire_and_forget_route_stores_no_result(live_system):
    route = TOPOLOGY.route_for("queueworks.reliability.tasks.dispatch_delayed_tasks")
    assert route.ignore_result is True
    result = app.send_task(route.task, queue=route.queue)
    wait_for(lambda: _finished_in_log(live_system, result.id, "succeeded"), 60,
             message="dispatch_delayed_tasks done")
    assert not TaskResult.objects.filter(task_id=result.id).exists()


def test_a_task_that_keeps_its_result_stores_one(live_system):
    from queueworks.core.tasks import probe

    result = probe.apply_async(kwargs={"token": uuid.uuid4().hex})
    wait_for(lambda: TaskResult.objects.filter(task_id=result.id, status="SUCCESS").exists(),
             60, message="probe's result row")


def test_the_worker_writes_results_through_the_upsert_backend(live_system):
    from queueworks.core.results_backend import UPSERT_BACKEND
    from queueworks.core.tasks import probe

    node = live_system.node("main_worker")
    conf = wait_for(lambda: (app.control.inspect(destination=[node], timeout=3.0).conf()
                             or {}).get(node), 60, interval=1, message=f"conf from {node}")
    # Named as the settings spell it (CELERY_RESULT_BACKEND) or as Celery does.
    backends = {key: value for key, value in conf.items()
                if key.lower() in ("result_backend", "celery_result_backend")}
    assert list(backends.values()) == [UPSERT_BACKEND], sorted(conf)
    token = uuid.uuid4().hex
    result = probe.apply_async(kwargs={"token": token})
    wait_for(lambda: TaskResult.objects.filter(task_id=result.id, status="SUCCESS").exists(),
             60, message="probe's result row")
    row = TaskResult.objects.get(task_id=result.id)
    # STARTED then SUCCESS in one row: the start kept, the extended columns written.
    assert row.date_started is not None and row.date_created <= row.date_started <= row.date_done
    assert row.task_name == probe.name and row.worker == node
    assert token in row.task_kwargs and row.content_type == "application/json"
    assert result.get(timeout=10)["token"] == token


def test_a_fire_and_forget_failure_is_still_stored(live_system):
    # fault_effect ignores its result; called without its arguments it fails
    # in the worker (send_task does not check a signature).
    result = app.send_task("apps.testing.tasks.fault_effect", args=[], queue="main_worker")
    wait_for(lambda: TaskResult.objects.filter(task_id=result.id, status="FAILURE").exists(),
             60, message="the failure's result row")


def test_main_worker_prefetches_its_headroom(live_system):
    worker = TOPOLOGY.worker_named("main_worker")
    node = live_system.node("main_worker")
    stats = app.control.inspect(destination=[node], timeout=3.0).stats()[node]
    assert stats["prefetch_count"] == (worker.concurrency * worker.prefetch_multiplier
                                       + worker.prefetch_headroom) == 4


class _EventLog:
    """Every task event on the vhost, by task id (what Flower would see)."""

    def __init__(self):
        import threading

        self.types: dict[str, set] = {}
        self.ready = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    def _on_event(self, event):
        if event.get("uuid"):
            self.types.setdefault(event["uuid"], set()).add(event["type"])

    def _listen(self):
        with app.connection_for_read() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": self._on_event})
            self.ready.set()
            while not self.done.is_set():
                try:
                    for _ in receiver.itercapture(limit=None, timeout=1, wakeup=False):
                        if self.done.is_set():
                            return
                except TimeoutError:
                    continue
                except OSError:  # socket.timeout on an idle second
                    continue

    def close(self):
        self.done.set()
        self.thread.join(10)


def _probe_events(log: _EventLog) -> set:
    """Run one probe on main_worker to the end; the task events seen for it."""
    from queueworks.core.tasks import probe

    result = probe.apply_async(kwargs={"token": uuid.uuid4().hex})
    wait_for(lambda: TaskResult.objects.filter(task_id=result.id, status="SUCCESS").exists(),
             60, message="probe done")
    import time

    time.sleep(0.5)  # events travel separately from the result row
    return log.types.get(result.id, set())


def test_task_events_flow_while_flower_listens_and_stop_without_it(live_system):
    log = _EventLog()
    try:
        # Flower asks for task events every 5 s while it runs.
        wait_for(lambda: "task-succeeded" in _probe_events(log), 60,
                 message="task events while Flower runs")
        assert live_system.ctl("stop", "flower").returncode == 0
        lease = TOPOLOGY.worker_named("main_worker").task_events_lease
        # The sender's own task-sent event is not the worker's.
        worker_events = {"task-received", "task-started", "task-succeeded"}
        wait_for(lambda: not _probe_events(log) & worker_events, lease * 3, interval=1,
                 message="task events off once Flower is gone")
    finally:
        live_system.ctl("start", "flower")
    live_system.wait_running(["flower"], timeout=60)
    wait_for(lambda: "task-succeeded" in _probe_events(log), 60,
             message="task events back with Flower")
    log.close()


def test_the_bulk_lane_declines_task_events_whoever_asks(live_system):
    """Flower asks every worker for task events; the bulk lane's programs
    declare none and no lease, so they keep their fast path."""
    node = live_system.node("bulk_worker_1")

    def reply():
        replies = app.control.broadcast("enable_events", destination=[node], reply=True,
                                        timeout=3)
        return next((answer[node] for answer in replies or [] if node in answer), None)

    answer = wait_for(reply, 60, interval=1, message=f"an enable_events reply from {node}")
    assert "task events stay off" in answer.get("ok", ""), answer
