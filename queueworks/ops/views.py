"""/ops/: the page an operator opens first.

Reading it needs ``taskapi.view_all_tasks`` (it shows every task's failures
and arguments); each action needs its own permission (see docs/security.md).
Stop, restart and discard need a confirmation; every action is audited.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from queueworks.core.error_reference import error_reference_logged
from queueworks.ops import selectors
from queueworks.limits.fair import fair_parent, fold_fair_states
from queueworks.limits.selectors import (
    fair_overview,
    fair_queue_names,
    unique_claims_recent,
    unique_overview,
)
from queueworks.ops.broker import BrokerStatsError, management_api, queue_stats
from queueworks.metrics.selectors import task_throughput_series, task_windows
from queueworks.ops.charts import activity_svg
from queueworks.ops.forms import FailureSearchForm
from queueworks.ops.programs import ProgramError, program_control, program_states
from queueworks.ops.audit import audit_recent, audit_record, audited
from queueworks.ops.models import AuditEntry
from queueworks.ops.services import (
    REQUEUE_DEAD_LETTERS,
    DeadLetterError,
    DeadLetterForbidden,
    RerunError,
    dead_letter_discard_one,
    dead_letter_requeue_checked,
    task_rerun_failed,
)
from queueworks.taskapi.access import OPERATE_TASKS, VIEW_ALL_TASKS
from queueworks.conf import TOPOLOGY
from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger(__name__)


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def permission_required(*permissions: str, page: bool = False, action: str = ""):
    """Every one of ``permissions`` (staff status grants nothing); refusal shows no data.

    An authenticated user refused an ``action`` is recorded in the audit log.
    """

    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            user = request.user
            if not user.is_authenticated:
                if page and not _wants_json(request):
                    return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
                return JsonResponse({"error": "authentication required"}, status=403)
            missing = [name for name in permissions if not user.has_perm(name)]
            if missing:
                if action:
                    audit_record(action=_audit_action(action, kwargs), request=request,
                                 target=_audit_target(kwargs), outcome=AuditEntry.REFUSED,
                                 via="dashboard", detail={"missing_permission": missing})
                return JsonResponse({"error": f"permission {', '.join(missing)} required"},
                                    status=403)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def _audit_action(action: str, kwargs: dict) -> str:
    return _program_audit_action(kwargs.get("action", "")) if action == "program" else action


def _program_audit_action(verb: str) -> str:
    return f"program.{verb}" if verb in ("start", "stop", "restart") else "program.invalid"


def _audit_target(kwargs: dict) -> str:
    return kwargs.get("name") or kwargs.get("task_id") or kwargs.get("letter_id") or ""


def confirmation_required(request, *, what: str) -> HttpResponse | None:
    """A destructive action runs only when the POST carries ``confirm=yes``.

    Without it a browser gets a page repeating the POST with the field (works
    without JavaScript), a JSON client a 400 naming ``confirm``.
    """
    if request.POST.get("confirm") == "yes":
        return None
    if _wants_json(request):
        return JsonResponse({"error": f"{what}: send confirm=yes to confirm", "field": "confirm"},
                            status=400)
    return render(request, "ops/confirm.html", {"what": what, "action": request.path})


CONTROL_PROGRAMS = "ops.control_programs"
VIEW_AUDIT = "ops.view_auditentry"


def dashboard_data(*, user=None) -> dict:
    """Everything the page shows, as plain data (the template and the JSON share it)."""
    now = timezone.now()
    errors = []
    try:
        programs = program_states()
    except ProgramError as exc:
        programs, errors = {}, [str(exc)]
    try:
        # Fair sharing's sub-queues too, for the limits panel (and those no
        # longer declared, whose messages count on their queue's row).
        stats = queue_stats(TOPOLOGY.queue_names() + fair_queue_names(TOPOLOGY),
                            also=lambda name: fair_parent(TOPOLOGY, name) is not None)
    except BrokerStatsError as exc:
        stats = {}
        reference = error_reference_logged(logger=logger, what="ops: queue statistics",
                                           detail=str(exc), level=logging.WARNING)
        errors.append(f"RabbitMQ's management API could not be read; the log has the detail "
                      f"under reference {reference}")
    # The alerts program evaluates the alerts; the page only shows its incidents.
    incidents = selectors.incidents_open()
    alerting = {(incident.queue, incident.kind) for incident in incidents}
    workers, worker_error = selectors.workers_overview(program_states=programs)
    if worker_error:
        errors.append(worker_error)
    activity = selectors.activity_per_minute(now=now)
    dead_letters, dead_letter_note = selectors.dead_letters()
    queues = []
    # A fair queue's row includes its sub-queues (each bucket: the limits panel).
    folded = fold_fair_states(TOPOLOGY, stats)
    for queue in TOPOLOGY.queues:
        stat = folded.get(queue.name)
        row = asdict(stat) if stat else {"name": queue.name, "exists": False, "ready": None,
                                         "unacked": None, "consumers": None, "oldest_wait": None}
        row.update({
            "purpose": queue.purpose, "wait_alert_seconds": queue.wait_alert_seconds,
            "consumed_by": [w.name for w in TOPOLOGY.consumers_of(queue.name)],
            "no_consumer": bool(stat and stat.ready and not stat.consumers),
            "alert": any(key[0] == queue.name for key in alerting),
            "activity": activity[queue.name],
            "chart": activity_svg(total=activity[queue.name]["total"],
                                  failed=activity[queue.name]["failed"],
                                  label=f"{queue.name}: tasks and failures per minute, last hour"),
        })
        queues.append(row)
    return {
        "generated_at": now,
        "tasks": _task_rows(now=now),
        "time_zone": settings.TIME_ZONE,
        "vhost": management_api().vhost,
        "errors": errors,
        "queues": queues,
        "argument_conflicts": selectors.argument_conflicts(stats=stats),
        "workers": [asdict(worker) for worker in workers],
        "programs": [asdict(state) for state in programs.values()],
        "incidents": [
            {"queue": i.queue, "kind": i.kind, "kind_text": i.get_kind_display(),
             "opened_at": i.opened_at, "notified_at": i.notified_at, "detail": i.detail}
            for i in incidents
        ],
        "limits": _limit_rows(),
        "failures": selectors.failures_recent(),
        "schedules": selectors.schedules_overview(now=now),
        "dead_letters": dead_letters,
        "dead_letter_note": dead_letter_note,
        # Unique tasks and fair sharing (queueworks/limits/selectors.py).
        "unique": [asdict(row) for row in unique_overview(TOPOLOGY)],
        "unique_claims": unique_claims_recent(),
        "fair": fair_overview(TOPOLOGY, stats),
        "audit": audit_recent() if user is not None and user.has_perm(VIEW_AUDIT) else None,
    }


DAY_STEP_MINUTES = 15


def _task_rows(*, now) -> list[dict]:
    """Per task name: the last hour and the last day, each with its chart."""
    windows = task_windows(now=now)
    hour = {row.task_name: row for row in windows["hour"]}
    names = [row.task_name for row in windows["day"]]
    by_minute = task_throughput_series(task_names=names, now=now, minutes=60)
    by_quarter = task_throughput_series(task_names=names, now=now, minutes=24 * 60,
                                        step=DAY_STEP_MINUTES)
    return [
        {
            "task_name": day.task_name, "day": asdict(day),
            "hour": asdict(hour[day.task_name]) if day.task_name in hour else None,
            "chart_hour": activity_svg(total=by_minute[day.task_name], height_px=40,
                                       label=f"{day.task_name}: runs per minute, last hour"),
            "chart_day": activity_svg(total=by_quarter[day.task_name], height_px=40,
                                      span_text="last 24 h", unit=f"/{DAY_STEP_MINUTES} min",
                                      label=f"{day.task_name}: runs per {DAY_STEP_MINUTES} "
                                            "minutes, last day"),
        }
        for day in windows["day"]
    ]


def _limit_rows() -> list[dict]:
    """Rate and concurrency limits per key (queueworks/limits): waiting,
    running, started, refused, mean wait before starting."""
    from queueworks.limits.selectors import limit_states

    return [{**asdict(state), "task": state.task, "kind": state.kind,
             "mean_wait_seconds": state.mean_wait_seconds} for state in limit_states()]


def _panels(request, data) -> str:
    return render_to_string("ops/_panels.html", {
        "data": data, "search_form": FailureSearchForm(),
    }, request=request)


@never_cache
@require_GET
@permission_required(VIEW_ALL_TASKS, page=True)
def dashboard(request):
    data = dashboard_data(user=request.user)
    return render(request, "ops/dashboard.html", {
        "data": data, "panels": _panels(request, data),
        "refresh_seconds": queueworks_settings.OPS_REFRESH_SECONDS,
    })


@never_cache
@require_GET
@permission_required(VIEW_ALL_TASKS)
def snapshot(request):
    data = dashboard_data(user=request.user)
    payload = {key: value for key, value in data.items() if key != "audit"}
    payload["queues"] = [{k: v for k, v in row.items() if k != "chart"} for row in data["queues"]]
    payload["tasks"] = [{k: v for k, v in row.items() if not k.startswith("chart")}
                        for row in data["tasks"]]
    payload["html"] = _panels(request, data)
    return JsonResponse(payload, encoder=DjangoJSONEncoder)


def _done(request, ok: bool, message: str, status: int = 200):
    if _wants_json(request):
        return JsonResponse({"ok": ok, "message": message} if ok else {"error": message},
                            status=status if ok else 400)
    (messages.success if ok else messages.error)(request, message)
    return redirect("ops:dashboard")


def _failed(request, what: str, exc: Exception):
    """An action failed inside (broker, database): the operator gets a
    reference, the log the error's text under it."""
    reference = error_reference_logged(logger=logger, what=f"ops: {what}",
                                       detail=f"{exc.__class__.__name__}: {exc}", exc=exc)
    message = f"{what} failed; the log has the detail under reference {reference}"
    if _wants_json(request):
        return JsonResponse({"error": message, "code": "failed", "reference": reference}, status=503)
    messages.error(request, message)
    return redirect("ops:dashboard")


DESTRUCTIVE_PROGRAM_ACTIONS = ("stop", "restart")


@require_POST
@permission_required(CONTROL_PROGRAMS, action="program")
def program_action(request, name: str, action: str):
    if action in DESTRUCTIVE_PROGRAM_ACTIONS:
        unconfirmed = confirmation_required(request, what=f"{action.capitalize()} {name}")
        if unconfirmed is not None:
            return unconfirmed
    try:
        with audited(action=_program_audit_action(action), target=name, request=request, via="dashboard",
                     refused=(ProgramError,)) as detail:
            message = program_control(name=name, action=action)
            detail["message"] = message
    except ProgramError as exc:
        return _done(request, False, str(exc))
    return _done(request, True, message, status=202)


@require_POST
@permission_required(OPERATE_TASKS, action="task.rerun")
def task_rerun(request, task_id: str):
    try:
        with audited(action="task.rerun", target=task_id, request=request, via="dashboard",
                     refused=(RerunError,)) as detail:
            rerun = task_rerun_failed(task_id=task_id, requested_by=request.user)
            detail["new_task_id"] = rerun.new_task_id
    except RerunError as exc:
        return _done(request, False, str(exc))
    message = f"Re-run of {rerun.task_name} queued as {rerun.new_task_id}"
    if _wants_json(request):
        return JsonResponse({"ok": True, "message": message, "task_id": rerun.new_task_id},
                            status=202)
    messages.success(request, message)
    return redirect("ops:dashboard")


@require_POST
@permission_required(REQUEUE_DEAD_LETTERS, action="dead_letter.requeue")
def dead_letter_requeue(request, letter_id: str):
    try:
        with audited(action="dead_letter.requeue", target=letter_id, request=request,
                     via="dashboard", refused=(DeadLetterError,)) as detail:
            requeued = dead_letter_requeue_checked(letter_id=letter_id, user=request.user)
            detail["requeued"] = requeued
    except DeadLetterForbidden as exc:
        if _wants_json(request):
            return JsonResponse({"error": str(exc)}, status=403)
        return _done(request, False, str(exc))
    except Exception as exc:  # noqa: BLE001 - answered with a reference to the logged error
        return _failed(request, "re-queue", exc)
    return _done(request, True, f"re-queued {', '.join(requeued)}", status=202)


@require_POST
@permission_required(REQUEUE_DEAD_LETTERS, action="dead_letter.discard")
def dead_letter_discard(request, letter_id: str):
    unconfirmed = confirmation_required(request, what=f"Discard dead letter {letter_id} for good")
    if unconfirmed is not None:
        return unconfirmed
    try:
        with audited(action="dead_letter.discard", target=letter_id, request=request,
                     via="dashboard", refused=(DeadLetterError,)) as detail:
            detail["removed"] = dead_letter_discard_one(letter_id=letter_id)
    except Exception as exc:  # noqa: BLE001 - answered with a reference to the logged error
        return _failed(request, "discard", exc)
    return _done(request, True, f"discarded dead letter {letter_id}", status=202)


@never_cache
@require_GET
@permission_required(VIEW_ALL_TASKS, page=True)
def failures(request):
    """Failed tasks by name, queue, error text and time range.

    A JSON client (``Accept: application/json``) gets the rows, or a 400
    naming each bad field; a browser the page with the form's errors.
    """
    form = FailureSearchForm(request.GET)
    valid = form.is_valid()
    rows = []
    if valid:
        filters = {key: value for key, value in form.cleaned_data.items() if value not in (None, "")}
        rows = selectors.failures_search(**filters)
    if _wants_json(request):
        if not valid:
            fields = form.error_fields()
            return JsonResponse({"error": "invalid search: " + ", ".join(sorted(fields)),
                                 "fields": fields}, status=400)
        return JsonResponse({"failures": rows, "count": len(rows)}, encoder=DjangoJSONEncoder)
    return render(request, "ops/failures.html", {"form": form, "rows": rows},
                  status=200 if valid else 400)
