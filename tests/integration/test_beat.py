"""Beat sends each crontab entry to the entry's own queue."""

import uuid
from datetime import timedelta

import pytest
from celery.beat import ScheduleEntry, Scheduler
from celery.schedules import crontab
from django.utils import timezone

from queueworks.core.checks import project_task_names
from queueworks.core.models import ProbeRun
from projectname.celery import app
from projectname.topology import TOPOLOGY
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.rabbitmq4, pytest.mark.django_db(transaction=True)]


class InMemoryScheduler(Scheduler):
    """Celery's own scheduler logic (is_due, apply_entry, publish) without a store.

    Records the id of every message it publishes, so a test follows its own
    messages and not the live beat's runs of the same tasks."""

    def __init__(self, *args, **kwargs):
        self.published: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    def setup_schedule(self):
        pass

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        result = super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        self.published[entry.name] = result.id
        return result


def _due_entry(name, task, queue, kwargs):
    # Every minute, last run long ago: due on the first tick.
    return ScheduleEntry(
        name=name, task=task, schedule=crontab(app=app), kwargs=kwargs,
        options={"queue": queue, "routing_key": queue},
        last_run_at=timezone.now() - timedelta(hours=1), app=app,
    )


def test_a_due_entry_is_published_to_its_queue_and_run_by_that_queues_worker(live_system):
    token = uuid.uuid4().hex
    # probe is routed to main_worker; the beat entry explicitly names heavy.
    entry = _due_entry("probe-on-heavy", "queueworks.core.tasks.probe", "heavy", {"token": token})
    scheduler = InMemoryScheduler(app=app, lazy=True)
    scheduler.schedule[entry.name] = entry

    scheduler.tick()

    run = wait_for(lambda: ProbeRun.objects.filter(token=token).first(), 30, message="probe ran")
    assert run.queue == "heavy"
    assert run.hostname == live_system.node("heavy_worker")


def test_topology_entries_publish_to_their_declared_queues(live_system):
    scheduler = InMemoryScheduler(app=app, lazy=True)
    published = []
    for declared in TOPOLOGY.schedules:
        entry = _due_entry(declared.name, declared.task, declared.queue, {})
        scheduler.schedule[entry.name] = entry
        published.append((declared.name, declared.task, declared.queue))

    for _ in published:  # one due entry is sent per tick
        scheduler.tick()
    assert set(scheduler.published) == {name for name, _, _ in published}, scheduler.published

    from django_celery_results.models import TaskResult

    project_task_names()  # import every app's tasks so their options can be read
    checked_queues = set()
    for name, task, queue in published:
        worker = next(w for w in TOPOLOGY.workers if queue in w.queues)
        task_id = scheduler.published[name]
        if app.tasks[task].ignore_result:
            # Fire-and-forget: no result row; the worker's own log says who ran it
            # (a worker logging at WARNING does not say, so it proves nothing here).
            if worker.log_level != "INFO":
                continue
            wait_for(lambda: f"{task}[{task_id}] succeeded" in live_system.log_tail(
                         worker.name, lines=5000),
                     60, message=f"{task} [{task_id}] sent by the scheduler done by {worker.name}")
        else:
            result = wait_for(
                lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").first(),
                60, message=f"{task} [{task_id}] sent by the scheduler done",
            )
            assert result.task_name == task
            assert result.worker == live_system.node(worker.name), (task, queue, result.worker)
        checked_queues.add(queue)
    # Both user-facing worker programs' queues are proven by a task they ran.
    assert {"main_worker", "heavy"} <= checked_queues
