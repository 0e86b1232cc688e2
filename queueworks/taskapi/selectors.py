"""Reads for the Task API: task state, task lists, workers and queues.

``task_get`` / ``task_list`` read the results table (django-celery-results'
``TaskResult``) joined with the Task API's ``TaskRecord``; they cover tasks
started through the API (visible as PENDING from the moment they are
accepted) and tasks started any other way once a worker stored a state.
``worker_list`` and ``queue_list`` ask the broker, with bounded timeouts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from celery import states
from django.conf import settings
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django_celery_results.models import TaskResult

from queueworks.taskapi.access import may_see, visible_results
from queueworks.core.broker_state import queue_counts
from queueworks.taskapi.broker import BROKER_ERRORS, broker_connection
from queueworks.taskapi.errors import BrokerUnavailable
from queueworks.taskapi.models import TaskRecord
from queueworks.taskapi.services import PROGRESS
from queueworks.conf import celery_app
from queueworks.conf import TOPOLOGY
from queueworks.conf import settings as queueworks_settings

app = celery_app()

KNOWN_STATES = (
    states.PENDING, states.RECEIVED, states.STARTED, PROGRESS, states.RETRY,
    states.SUCCESS, states.FAILURE, states.REVOKED, states.REJECTED, states.IGNORED,
)


def _decode(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _error(payload: Any, traceback: str | None, include_traceback: bool) -> dict | None:
    if isinstance(payload, dict) and "exc_type" in payload:
        message = payload.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(part) for part in message)
        error = {
            "type": payload.get("exc_type"),
            "module": payload.get("exc_module"),
            "message": "" if message is None else str(message),
        }
    else:
        error = {"type": None, "module": None, "message": "" if payload is None else str(payload)}
    if include_traceback:
        error["traceback"] = traceback or ""
    return error


def _progress(payload: Any) -> dict | None:
    if not isinstance(payload, dict):
        return None
    current, total = payload.get("current"), payload.get("total")
    if not isinstance(current, (int, float)) or not isinstance(total, (int, float)):
        return None
    percent = round(100 * current / total, 1) if total else None
    return {"current": current, "total": total, "percent": percent}


def task_state(*, result: TaskResult | None, record: TaskRecord | None) -> str:
    state = result.status if result is not None else states.PENDING
    if record is not None and record.is_cancelled and state in (
        states.PENDING, states.RECEIVED,
    ):
        # The stored cancellation wins over a stale PENDING.
        state = states.REVOKED
    return state


def task_as_dict(
    *, result: TaskResult | None, record: TaskRecord | None, include_traceback: bool = False,
) -> dict[str, Any]:
    """The API's view of one task (both rows may be given, at least one must be)."""
    assert result is not None or record is not None
    state = task_state(result=result, record=record)
    name = (result.task_name if result is not None else None) or (
        record.task_name if record is not None else "")
    payload = _decode(result.result) if result is not None else None
    if record is not None:
        args, kwargs = record.args, record.kwargs
    else:
        # Started outside the API: Celery stored a repr of the arguments.
        args, kwargs = _decode(result.task_args), _decode(result.task_kwargs)
    done = state in states.READY_STATES
    cancellation = None
    if record is not None and record.is_cancelled:
        cancellation = {
            "at": record.cancelled_at,
            "by": record.cancelled_by.get_username() if record.cancelled_by_id else None,
            "terminate": record.cancel_terminate,
            "signal": record.cancel_signal or None,
        }
    return {
        "task_id": result.task_id if result is not None else record.task_id,
        "task": name,
        "state": state,
        "queue": record.queue if record is not None and record.queue else TOPOLOGY.queue_for(name),
        "priority": record.priority if record is not None else None,
        "eta": record.eta if record is not None else None,
        "worker": (result.worker if result is not None else None) or None,
        "args": args,
        "kwargs": kwargs,
        "result": payload if state == states.SUCCESS else None,
        "error": (_error(payload, result.traceback if result else None, include_traceback)
                  if state in (states.FAILURE, states.RETRY) else None),
        "progress": _progress(payload) if state == PROGRESS else None,
        "retries": record.retries if record is not None else 0,
        "date_created": (result.date_created if result is not None else record.accepted_at),
        "date_started": result.date_started if result is not None else None,
        "date_done": result.date_done if result is not None and done else None,
        "cancellation": cancellation,
        "rerun_of": record.rerun_of.task_id if record is not None and record.rerun_of_id else None,
        "requested_by": (record.requested_by.get_username()
                         if record is not None and record.requested_by_id else None),
    }


def task_get(*, task_id: str, include_traceback: bool = False,
             user=None) -> dict[str, Any] | None:
    """One task by id, or None when that id was never issued (or has expired,
    or ``user`` may not read it)."""
    record = (TaskRecord.objects.select_related("cancelled_by", "requested_by", "rerun_of")
              .filter(task_id=task_id).first())
    result = TaskResult.objects.filter(task_id=task_id).first()
    if record is None and result is None:
        return None
    if user is not None and not may_see(user, record):
        return None
    return task_as_dict(result=result, record=record, include_traceback=include_traceback)


def _tasks_routed_to(queue: str) -> Q:
    routed = [route.task for route in TOPOLOGY.routes]
    if queue == TOPOLOGY.default_queue:
        mine = Q(task_name__in=[r.task for r in TOPOLOGY.routes if r.queue == queue])
        return mine | ~Q(task_name__in=routed)
    return Q(task_name__in=[r.task for r in TOPOLOGY.routes if r.queue == queue])


def task_list(
    *, state: str | None = None, task: str | None = None, queue: str | None = None,
    since: datetime | None = None, user=None,
) -> QuerySet[TaskResult]:
    """Results, newest first, filtered; ``queue`` matches the queue the API
    published to, or for other tasks the queue their route names.  With a
    ``user``: only the tasks that user may read (see ``queueworks.taskapi.access``)."""
    records = TaskRecord.objects.filter(task_id=OuterRef("task_id"))
    queryset = TaskResult.objects.order_by("-date_created", "-id")
    # The record's columns are joined only for the filters that need them:
    # every row of a page would pay for the subqueries otherwise.
    visible = visible_results(user)
    if visible is not None:
        queryset = queryset.annotate(
            record_requester=Subquery(records.values("requested_by")[:1])).filter(visible)
    if state:
        queryset = queryset.filter(status=state)
    if task:
        queryset = queryset.filter(task_name=task)
    if queue:
        queryset = queryset.annotate(record_queue=Subquery(records.values("queue")[:1])).filter(
            Q(record_queue=queue) | (Q(record_queue__isnull=True) & _tasks_routed_to(queue))
        )
    if since:
        queryset = queryset.filter(date_created__gte=since)
    return queryset


def task_rows(results: Iterable[TaskResult], *, include_traceback: bool = False) -> list[dict]:
    results = list(results)
    records = {
        record.task_id: record
        for record in TaskRecord.objects.select_related("cancelled_by", "requested_by", "rerun_of")
        .filter(task_id__in=[result.task_id for result in results])
    }
    return [
        task_as_dict(result=result, record=records.get(result.task_id),
                     include_traceback=include_traceback)
        for result in results
    ]


# -- workers ---------------------------------------------------------------------

def _program(hostname: str) -> str:
    return TOPOLOGY.program_of_node(hostname)


def _brief(request: dict) -> dict:
    return {
        "id": request.get("id"),
        "name": request.get("name") or request.get("type"),
        "args": request.get("args"),
        "kwargs": request.get("kwargs"),
        "time_start": request.get("time_start"),
        "worker_pid": request.get("worker_pid"),
    }


def worker_list(*, timeout: float | None = None) -> list[dict[str, Any]]:
    """Every answering worker node and every topology program that did not answer.

    Nodes are discovered with one ``ping`` broadcast waiting ``timeout``
    seconds; the other inspect calls then target the nodes that answered and
    return as soon as all of them replied.  Programs with no answering node
    are listed with ``status: "unreachable"``.
    """
    timeout = queueworks_settings.TASKAPI_INSPECT_TIMEOUT if timeout is None else timeout
    try:
        with broker_connection() as conn:
            pings = app.control.inspect(timeout=timeout, connection=conn).ping() or {}
            nodes = sorted(pings)
            replies: dict[str, dict] = {}
            if nodes:
                inspect = app.control.inspect(
                    destination=nodes, timeout=timeout, connection=conn, limit=len(nodes),
                )
                for command in ("stats", "active_queues", "active", "reserved", "scheduled"):
                    replies[command] = getattr(inspect, command)() or {}
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(f"Lost the broker while asking workers: {exc}") from exc

    workers = []
    for node in nodes:
        stats = replies["stats"].get(node) or {}
        pool = stats.get("pool") or {}
        queues = replies["active_queues"].get(node)
        scheduled = replies["scheduled"].get(node)
        workers.append({
            "hostname": node,
            "program": _program(node),
            "status": "online",
            "queues": sorted(q["name"] for q in queues) if queues is not None else None,
            "active": [_brief(r) for r in replies["active"].get(node) or []],
            "reserved": [_brief(r) for r in replies["reserved"].get(node) or []],
            "scheduled": [
                {"eta": entry.get("eta"), "priority": entry.get("priority"),
                 **_brief(entry.get("request") or {})}
                for entry in scheduled or []
            ],
            "pool": {
                "implementation": pool.get("implementation"),
                "max_concurrency": pool.get("max-concurrency"),
                "processes": pool.get("processes"),
            } if pool else None,
            "uptime": stats.get("uptime"),
        })
    answered = {_program(node) for node in nodes}
    for worker in TOPOLOGY.workers:
        if worker.name not in answered:
            workers.append({
                "hostname": None, "program": worker.name, "status": "unreachable",
                "queues": list(worker.queues), "active": [], "reserved": [], "scheduled": [],
                "pool": None, "uptime": None,
            })
    return workers


# -- queues ----------------------------------------------------------------------

def queue_list() -> list[dict[str, Any]]:
    """Messages ready and consumers per declared queue (passive declare over
    AMQP: works without the management plugin and never creates a queue)."""
    rows = []
    try:
        with broker_connection() as conn:
            counts = queue_counts(conn, TOPOLOGY.queue_names())
            for queue in TOPOLOGY.queues:
                programs = [worker.name for worker in TOPOLOGY.consumers_of(queue.name)]
                count = counts[queue.name]
                exists = count is not None
                ready, consumers = count if exists else (None, None)
                alert = None
                if not exists:
                    alert = "queue does not exist on the broker yet (no worker has declared it)"
                elif consumers == 0:
                    alert = (f"no consumer: messages wait until {', '.join(programs)} "
                             "consume it" if programs else "no consumer and no program consumes it")
                rows.append({
                    "name": queue.name,
                    "purpose": queue.purpose,
                    "exists": exists,
                    "messages_ready": ready,
                    "consumers": consumers,
                    "expected_consumers": programs,
                    "max_priority": queue.max_priority,
                    "no_consumers": bool(exists and consumers == 0),
                    "alert": alert,
                })
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(f"Lost the broker while reading queues: {exc}") from exc
    return rows
