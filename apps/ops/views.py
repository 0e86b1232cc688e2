"""/ops/: the page an operator opens first (staff only)."""

from __future__ import annotations

from dataclasses import asdict
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.serializers.json import DjangoJSONEncoder
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from apps.ops import selectors
from apps.ops.broker import BrokerStatsError, management_api, queue_stats
from apps.ops.charts import activity_svg
from apps.ops.programs import ProgramError, program_control, program_states
from apps.ops.services import RerunError, alerts_evaluate, task_rerun_failed
from projectname.topology import TOPOLOGY


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def staff_required(view=None, *, permission: str | None = None, page: bool = False):
    """Staff only (and the permission, for actions); refusal never shows data."""

    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            user = request.user
            if not user.is_authenticated:
                if page:
                    return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
                return JsonResponse({"error": "authentication required"}, status=403)
            if not user.is_staff:
                return JsonResponse({"error": "staff only"}, status=403)
            if permission and not user.has_perm(permission):
                return JsonResponse({"error": f"permission {permission} required"}, status=403)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate(view) if view else decorate


def dashboard_data() -> dict:
    """Everything the page shows, as plain data (the template and the JSON share it)."""
    now = timezone.now()
    errors = []
    try:
        programs = program_states()
    except ProgramError as exc:
        programs, errors = {}, [str(exc)]
    try:
        stats = queue_stats(TOPOLOGY.queue_names())
    except BrokerStatsError as exc:
        stats = {}
        errors.append(str(exc))
    incidents = alerts_evaluate(stats=stats, now=now) if stats else selectors.incidents_open()
    alerting = {(incident.queue, incident.kind) for incident in incidents}
    workers, worker_error = selectors.workers_overview(program_states=programs)
    if worker_error:
        errors.append(worker_error)
    activity = selectors.activity_per_minute(now=now)
    dead_letters, dead_letter_note = selectors.dead_letters()
    queues = []
    for queue in TOPOLOGY.queues:
        stat = stats.get(queue.name)
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
        "failures": selectors.failures_recent(),
        "schedules": selectors.schedules_overview(now=now),
        "dead_letters": dead_letters,
        "dead_letter_note": dead_letter_note,
    }


def _panels(request, data) -> str:
    return render_to_string("ops/_panels.html", {"data": data}, request=request)


@never_cache
@require_GET
@staff_required(page=True)
def dashboard(request):
    data = dashboard_data()
    return render(request, "ops/dashboard.html", {
        "data": data, "panels": _panels(request, data),
        "refresh_seconds": settings.OPS_REFRESH_SECONDS,
    })


@never_cache
@require_GET
@staff_required
def snapshot(request):
    data = dashboard_data()
    payload = {key: value for key, value in data.items()}
    payload["queues"] = [{k: v for k, v in row.items() if k != "chart"} for row in data["queues"]]
    payload["html"] = _panels(request, data)
    return JsonResponse(payload, encoder=DjangoJSONEncoder)


def _done(request, ok: bool, message: str, status: int = 200):
    if _wants_json(request):
        return JsonResponse({"ok": ok, "message": message} if ok else {"error": message},
                            status=status if ok else 400)
    (messages.success if ok else messages.error)(request, message)
    return redirect("ops:dashboard")


@require_POST
@staff_required(permission="ops.control_programs")
def program_action(request, name: str, action: str):
    try:
        return _done(request, True, program_control(name=name, action=action), status=202)
    except ProgramError as exc:
        return _done(request, False, str(exc))


@require_POST
@staff_required(permission="ops.rerun_tasks")
def task_rerun(request, task_id: str):
    try:
        rerun = task_rerun_failed(task_id=task_id, requested_by=request.user)
    except RerunError as exc:
        return _done(request, False, str(exc))
    message = f"Re-run of {rerun.task_name} queued as {rerun.new_task_id}"
    if _wants_json(request):
        return JsonResponse({"ok": True, "message": message, "task_id": rerun.new_task_id},
                            status=202)
    messages.success(request, message)
    return redirect("ops:dashboard")


@require_POST
@staff_required(permission="ops.requeue_dead_letters")
def dead_letter_requeue(request, letter_id: str):
    try:
        from apps.reliability.services import dead_letter_requeue as requeue
    except ImportError:
        return _done(request, False, "dead-letter services are not installed")
    try:
        requeued = requeue(dead_letter_id=letter_id)
    except Exception as exc:  # noqa: BLE001 - the operator sees why
        return _done(request, False, f"re-queue failed: {exc}")
    if not requeued:
        return _done(request, False, f"dead letter {letter_id} not found (already re-queued?)")
    return _done(request, True, f"re-queued {', '.join(requeued)}", status=202)
