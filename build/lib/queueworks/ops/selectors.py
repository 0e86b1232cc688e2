"""Reads for the operations dashboard.  History comes from the database."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import TruncMinute
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from queueworks.ops.models import AlertIncident, SyncedSchedule, TaskRerun
from queueworks.conf import TOPOLOGY

ACTIVITY_MINUTES = 60


# -- workers -------------------------------------------------------------------
@dataclass
class WorkerView:
    name: str
    node: str
    declared_queues: tuple[str, ...]
    online: bool = False
    queues: list[str] = field(default_factory=list)
    active: list[dict] = field(default_factory=list)
    program_state: str = "UNKNOWN"
    # The name its program is controlled by (<host>:<program> with an inventory).
    control_name: str = ""


def worker_node(worker_name: str) -> str:
    return f"{worker_name}@{socket.gethostname()}"


def workers_overview(*, program_states: dict | None = None) -> tuple[list[WorkerView], str]:
    """Each declared worker: online?, consumed queues, active tasks with progress.

    From the shared workers snapshot (queueworks/taskapi/worker_snapshot.py), so a
    page load never waits for an inspect broadcast.  Returns (workers, error
    message or "").
    """
    views = [WorkerView(name=w.name, node=worker_node(w.name), declared_queues=w.queues)
             for w in TOPOLOGY.workers]
    answered, error = _workers_replies()
    active_ids = [task["id"] for worker in answered.values() for task in worker["active"]]
    progress = _progress_of(active_ids)
    for view in views:
        worker = answered.get(view.name)
        view.online = worker is not None
        if worker is not None:
            view.node = worker["hostname"]
            view.queues = sorted(worker["queues"] or [])
            view.active = [
                {
                    "id": task["id"], "name": task.get("name") or "",
                    "started": _from_timestamp(task.get("time_start")),
                    "progress": progress.get(task["id"]),
                }
                for task in worker["active"]
            ]
        # With an inventory the states are named <host>:<program>: the first
        # host running this program speaks for it.
        state = next((state for state in (program_states or {}).values()
                      if state.program == view.name), None)
        if state is not None:
            view.program_state = state.state
        view.control_name = state.name if state is not None else view.name
    return views, error


def _workers_replies() -> tuple[dict[str, dict], str]:
    """Program name -> its online worker in the snapshot, and why there is none."""
    from queueworks.taskapi.worker_snapshot import workers_snapshot

    snapshot = workers_snapshot()
    if snapshot is None:
        return {}, "the workers have not answered yet"
    if snapshot.workers is None:
        return {}, f"cannot reach the workers through the broker: {snapshot.error}"
    return {worker["program"]: worker for worker in snapshot.workers
            if worker["status"] == "online"}, ""


def _from_timestamp(value) -> datetime | None:
    if not value:
        return None
    return datetime.fromtimestamp(value, tz=timezone.get_current_timezone())


def _progress_of(task_ids: list[str]) -> dict[str, dict]:
    """Progress (current/total, percent) that long tasks report via update_state."""
    progress = {}
    for task_id, result in TaskResult.objects.filter(
            task_id__in=task_ids, status="PROGRESS").values_list("task_id", "result"):
        try:
            meta = json.loads(result or "{}")
            current, total = int(meta["current"]), int(meta["total"])
        except (ValueError, KeyError, TypeError):
            continue
        progress[task_id] = {"current": current, "total": total,
                             "percent": round(100 * current / total) if total else 0}
    return progress


# -- activity ------------------------------------------------------------------
def _accepted_queue():
    """The queue an accepted-task row (queueworks.taskapi) names for the result's task id."""
    from queueworks.taskapi.models import TaskRecord

    return Subquery(TaskRecord.objects.filter(task_id=OuterRef("task_id")).values("queue")[:1])


def activity_per_minute(*, now: datetime | None = None, minutes: int = ACTIVITY_MINUTES) -> dict[str, dict]:
    """Per queue: finished tasks and failures per minute over the last hour.

    From the results table (it survives restarts of Flower and the web
    server).  The queue is the one the Task API accepted the task on (its
    ``TaskRecord``), else the task's declared route.
    """
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes - 1)
    series = {queue: {"total": [0] * minutes, "failed": [0] * minutes}
              for queue in TOPOLOGY.queue_names()}
    rows = (TaskResult.objects.filter(date_done__gte=start, status__in=("SUCCESS", "FAILURE"))
            .annotate(minute=TruncMinute("date_done"), accepted_queue=_accepted_queue())
            .values("minute", "task_name", "accepted_queue", "status")
            .annotate(count=Count("id")))
    for row in rows:
        queue = row["accepted_queue"] or TOPOLOGY.queue_for(row["task_name"] or "")
        index = int((row["minute"] - start).total_seconds() // 60)
        if queue not in series or not 0 <= index < minutes:
            continue
        series[queue]["total"][index] += row["count"]
        if row["status"] == "FAILURE":
            series[queue]["failed"][index] += row["count"]
    for data in series.values():
        data["last_hour"] = sum(data["total"])
        data["failed_last_hour"] = sum(data["failed"])
    return series


def failures_recent(*, limit: int = 15) -> list[dict]:
    failures = list(TaskResult.objects.filter(status="FAILURE")
                    .annotate(accepted_queue=_accepted_queue()).order_by("-date_done")[:limit])
    reruns: dict[str, TaskRerun] = {}
    for rerun in TaskRerun.objects.filter(original_task_id__in=[f.task_id for f in failures]):
        reruns.setdefault(rerun.original_task_id, rerun)
    statuses = dict(TaskResult.objects.filter(
        task_id__in=[r.new_task_id for r in reruns.values()]).values_list("task_id", "status"))
    return [
        {
            "task_id": failure.task_id, "task_name": failure.task_name or "",
            "queue": failure.accepted_queue or TOPOLOGY.queue_for(failure.task_name or ""),
            "date_done": failure.date_done, "error": _error_text(failure),
            "args": _json_or_text(failure.task_args), "kwargs": _json_or_text(failure.task_kwargs),
            "rerun_task_id": reruns[failure.task_id].new_task_id if failure.task_id in reruns else "",
            "rerun_status": (statuses.get(reruns[failure.task_id].new_task_id, "PENDING")
                             if failure.task_id in reruns else ""),
        }
        for failure in failures
    ]


def _json_or_text(value):
    try:
        return json.loads(value) if value else None
    except ValueError:
        return value


def _error_text(result: TaskResult) -> str:
    try:
        data = json.loads(result.result or "{}")
        if isinstance(data, dict) and "exc_type" in data:
            message = data.get("exc_message")
            if isinstance(message, (list, tuple)):
                message = " ".join(str(part) for part in message)
            return f"{data['exc_type']}: {message}"
    except ValueError:
        pass
    lines = (result.traceback or "").strip().splitlines()
    return lines[-1] if lines else (result.result or "")


# -- schedules -----------------------------------------------------------------
def schedules_overview(*, now: datetime | None = None) -> list[dict]:
    """Every beat entry in the database, as the DatabaseScheduler sees it."""
    now = now or timezone.now()
    tz = timezone.get_current_timezone()
    managed = set(SyncedSchedule.objects.values_list("name", flat=True))
    entries = []
    for task in PeriodicTask.objects.select_related("crontab", "interval").order_by("name"):
        schedule_text, next_run = _schedule_text(task), None
        if task.enabled and (task.crontab_id or task.interval_id):
            next_run = _next_run(task, now)
        entries.append({
            "name": task.name, "task": task.task,
            "queue": task.queue or TOPOLOGY.queue_for(task.task),
            "schedule": schedule_text,
            "next_run": next_run.astimezone(tz) if next_run else None,
            "last_run": task.last_run_at.astimezone(tz) if task.last_run_at else None,
            "enabled": task.enabled, "managed": task.name in managed,
            "total_run_count": task.total_run_count,
        })
    return entries


def _schedule_text(task: PeriodicTask) -> str:
    if task.crontab_id:
        return task.crontab.human_readable
    if task.interval_id:
        return str(task.interval)
    return str(task.clocked or task.solar or "")


def _next_run(task: PeriodicTask, now: datetime) -> datetime | None:
    """When beat will send it next (same rule as django-celery-beat's ModelEntry)."""
    from queueworks.conf import celery_app
    app = celery_app()

    schedule = task.crontab.schedule if task.crontab_id else task.interval.schedule
    schedule.app = app
    schedule.nowfun = lambda: now.astimezone(app.timezone)
    last_run = (task.last_run_at or task.date_changed or now).astimezone(app.timezone)
    if task.crontab_id:
        # The wall-clock slot itself (not now + remaining seconds, which is an
        # hour off across a DST change).
        start, delta, _ = schedule.remaining_delta(last_run)
        return max(start + delta, now)
    return now + max(schedule.remaining_estimate(last_run), timedelta(0))


# -- queue arguments -----------------------------------------------------------
def argument_conflicts(*, stats: dict) -> list[dict]:
    """One row per difference between a live queue's arguments and the topology."""
    from queueworks.core.broker_state import queue_conflicts

    return [{"queue": name, "text": text}
            for name, differences in queue_conflicts(stats).items() for text in differences]


# -- alerts --------------------------------------------------------------------
def incidents_open() -> list[AlertIncident]:
    return list(AlertIncident.objects.filter(closed_at__isnull=True).order_by("queue", "kind"))


def incidents_recent(*, limit: int = 10) -> list[AlertIncident]:
    return list(AlertIncident.objects.all()[:limit])


# -- dead letters (queueworks.reliability, when installed) ---------------------------
def dead_letters(*, limit: int = 50) -> tuple[list[dict], str]:
    """(rows, note). Empty with a note when the reliability app is not there."""
    try:
        from queueworks.reliability.services import dead_letters_list
    except ImportError:
        return [], "Dead-letter services are not installed (queueworks.reliability)."
    try:
        rows = dead_letters_list(limit=limit)
    except Exception as exc:  # noqa: BLE001 - shown to the operator, not swallowed
        return [], f"Cannot list dead letters: {exc}"
    return [row.as_dict() for row in rows], ""


# -- failed-task search --------------------------------------------------------
def failures_search(*, task: str = "", queue: str = "", error: str = "",
                    since: datetime | None = None, until: datetime | None = None,
                    limit: int = 100) -> list[dict]:
    """Failed tasks, newest first, matching every given filter.

    ``queue`` is the queue the Task API accepted the task on, else the one
    its name is routed to (as the dashboard shows it).
    """
    failures = (TaskResult.objects.filter(status="FAILURE")
                .annotate(accepted_queue=_accepted_queue()).order_by("-date_done"))
    if task:
        failures = failures.filter(task_name__icontains=task)
    if error:
        failures = failures.filter(Q(result__icontains=error) | Q(traceback__icontains=error))
    if since:
        failures = failures.filter(date_done__gte=since)
    if until:
        failures = failures.filter(date_done__lt=until)
    if queue:
        failures = failures.filter(Q(accepted_queue=queue) | Q(
            accepted_queue__isnull=True, task_name__in=_names_routed_to(queue, failures)))
    return [
        {"task_id": row.task_id, "task_name": row.task_name or "",
         "queue": row.accepted_queue or TOPOLOGY.queue_for(row.task_name or ""),
         "date_done": row.date_done, "error": _error_text(row), "worker": row.worker or ""}
        for row in failures[:limit]
    ]


def _names_routed_to(queue: str, failures) -> list[str]:
    """Task names among the failures whose route (or the default) is ``queue``."""
    names = failures.order_by().values_list("task_name", flat=True).distinct()
    return [name for name in names if TOPOLOGY.queue_for(name or "") == queue]
