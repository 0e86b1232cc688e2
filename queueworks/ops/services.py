"""Writes of the operations app: alerts, re-runs, schedule sync."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from queueworks.dispatch.compat import celery as compat_celery
from queueworks.ops.alerts import alert_channels
from queueworks.ops.broker import QueueStats
from queueworks.ops.models import AlertIncident, AuditEntry, SyncedSchedule, TaskRerun
from queueworks.conf import TOPOLOGY
from queueworks.core.topology import Topology
from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger(__name__)


# -- wait-time alerts ------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    queue: str
    kind: str
    active: bool
    value: float
    message: str
    grace_seconds: float


def queue_conditions(*, stats: dict[str, QueueStats], topology: Topology = TOPOLOGY) -> list[Condition]:
    """The alert conditions of every declared queue, crossed or not."""
    conditions = []
    grace = queueworks_settings.OPS_NO_CONSUMER_GRACE_SECONDS
    for queue in topology.queues:
        stat = stats.get(queue.name)
        if stat is None or not stat.exists:
            continue
        conditions.append(Condition(
            queue=queue.name, kind=AlertIncident.KIND_NO_CONSUMER,
            active=stat.ready > 0 and stat.consumers == 0, value=stat.ready,
            message=f"queue {queue.name}: {stat.ready} message(s) waiting and no consumer",
            grace_seconds=grace,
        ))
        if queue.wait_alert_seconds:
            wait = stat.oldest_wait or 0
            conditions.append(Condition(
                queue=queue.name, kind=AlertIncident.KIND_WAIT,
                active=stat.oldest_wait is not None and wait >= queue.wait_alert_seconds,
                value=wait,
                message=(f"queue {queue.name}: the oldest message has waited {wait:.0f} s "
                         f"(threshold {queue.wait_alert_seconds} s); {stat.ready} ready, "
                         f"{stat.consumers} consumer(s)"),
                grace_seconds=0,
            ))
    return conditions


def program_conditions(*, programs: dict, topology: Topology = TOPOLOGY) -> list[Condition]:
    """A crash-loop condition per worker program and beat (BACKOFF/FATAL), with its last error."""
    from queueworks.core.program_logs import CRASH_STATES

    conditions = []
    for name in [worker.name for worker in topology.workers] + ["beat"]:
        state = programs.get(name)
        # STARTING proves nothing either way (a crash loop spends most of its
        # time there): an open incident stays open until RUNNING or stopped.
        if state is None or state.state == "STARTING":
            continue
        # RUNNING with a last error: restarted after a recent crash (see
        # queueworks/core/program_logs.py), still looping.
        crashing = state.state in CRASH_STATES or (state.state == "RUNNING" and bool(state.last_error))
        error = f"; last error in its log: {state.last_error}" if state.last_error else ""
        conditions.append(Condition(
            queue=name, kind=AlertIncident.KIND_CRASH_LOOP, active=crashing, value=1.0,
            message=f"program {name}: {state.state}, it keeps dying{error}", grace_seconds=0))
    return conditions


def alerts_evaluate(*, stats: dict[str, QueueStats], now: datetime | None = None,
                    topology: Topology = TOPOLOGY, programs: dict | None = None
                    ) -> list[AlertIncident]:
    """Open, notify and close incidents; returns the open ones.

    Called by the alerts program (``manage.py ops_alerts --loop``, through
    :func:`alerts_check`) and by a one-off ``manage.py ops_alerts`` (the
    dashboard only reads the incidents), from any number of processes: an incident is opened once, notified once (the first caller to
    stamp ``notified_at`` sends it) and closed when the condition clears; the
    caller that closes a notified incident sends the recovery.  ``programs``
    (supervisor states) adds the crash-loop conditions.
    """
    now = now or timezone.now()
    conditions = queue_conditions(stats=stats, topology=topology)
    if programs is not None:
        conditions += program_conditions(programs=programs, topology=topology)
    for condition in conditions:
        open_incidents = AlertIncident.objects.filter(
            queue=condition.queue, kind=condition.kind, closed_at__isnull=True)
        if not condition.active:
            for incident in open_incidents:
                closed = AlertIncident.objects.filter(
                    pk=incident.pk, closed_at__isnull=True).update(closed_at=now)
                if closed and incident.notified_at is not None:
                    incident.closed_at = now
                    _notify(incident, f"RESOLVED: {incident.detail} (cleared after "
                                      f"{(now - incident.opened_at).total_seconds():.0f} s)")
            continue
        incident = open_incidents.first()
        if incident is None:
            try:
                with transaction.atomic():
                    incident = AlertIncident.objects.create(
                        queue=condition.queue, kind=condition.kind, opened_at=now,
                        detail=condition.message, peak=condition.value)
            except IntegrityError:  # another web process opened it first
                incident = open_incidents.first()
                if incident is None:
                    continue
        if condition.value > incident.peak:
            AlertIncident.objects.filter(pk=incident.pk).update(
                peak=condition.value, detail=condition.message)
        if (now - incident.opened_at).total_seconds() >= condition.grace_seconds:
            claimed = AlertIncident.objects.filter(pk=incident.pk, notified_at__isnull=True).update(
                notified_at=now)
            if claimed:
                incident.refresh_from_db()
                _notify(incident, condition.message)
    return list(AlertIncident.objects.filter(closed_at__isnull=True).order_by("queue", "kind"))


def _notify(incident: AlertIncident, message: str) -> None:
    for channel in alert_channels():
        try:
            channel.send(incident, message)
        except Exception:  # one broken channel must not silence the others
            logger.exception("alert channel %s failed for %s", type(channel).__name__, incident)


# -- re-run a failed task ------------------------------------------------------------
class RerunError(Exception):
    pass


def task_rerun_failed(*, task_id: str, requested_by=None) -> TaskRerun:
    """Send a failed task again, with its stored name and arguments, to its queue.

    Delegates to the Task API's ``task_rerun`` (exact stored JSON arguments,
    queue and priority; allowlisted tasks only; the message is published after
    the transaction commits).  The new id is recorded so the dashboard links
    the failure to its re-run.
    """
    from queueworks.taskapi.errors import TaskApiError
    from queueworks.taskapi.services import task_rerun

    failure = TaskResult.objects.filter(task_id=task_id).first()
    if failure is None:
        raise RerunError(f"no stored result for task {task_id}")
    if failure.status != "FAILURE":
        raise RerunError(f"task {task_id} is {failure.status}, only failed tasks are re-run here")
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    try:
        ticket = task_rerun(task_id=task_id, user=user)
    except TaskApiError as exc:
        reference = f" (reference {exc.reference})" if exc.reference else ""
        raise RerunError(f"{exc.detail}{reference}") from exc
    return TaskRerun.objects.create(original_task_id=task_id, new_task_id=ticket.task_id,
                                    task_name=ticket.task, requested_by=user)


# -- schedules: topology -> django-celery-beat ------------------------------------------
MANAGED_FIELDS = ("task", "schedule", "queue", "kwargs")


def _desired(entry, tz: str) -> dict:
    schedule = entry.schedule
    fields = compat_celery.crontab_fields(schedule)
    if fields is not None:
        spec = {"type": "crontab", **fields, "timezone": tz}
    else:  # timedelta, or celery.schedules.schedule
        seconds = getattr(schedule, "run_every", schedule).total_seconds()
        spec = {"type": "interval", "every": int(seconds), "period": "seconds"}
    return {"task": entry.task, "schedule": spec, "queue": entry.queue,
            "kwargs": dict(entry.kwargs)}


def _current(task: PeriodicTask) -> dict:
    if task.crontab_id:
        crontab = task.crontab
        spec = {"type": "crontab", "minute": crontab.minute, "hour": crontab.hour,
                "day_of_week": crontab.day_of_week, "day_of_month": crontab.day_of_month,
                "month_of_year": crontab.month_of_year, "timezone": str(crontab.timezone)}
    elif task.interval_id:
        interval = task.interval
        seconds = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1,
                   "microseconds": 1e-6}[interval.period] * interval.every
        spec = {"type": "interval", "every": int(seconds), "period": "seconds"}
    else:
        spec = {"type": "other"}
    try:
        kwargs = json.loads(task.kwargs or "{}")
    except ValueError:
        kwargs = task.kwargs
    return {"task": task.task, "schedule": spec, "queue": task.queue or "", "kwargs": kwargs}


def _apply(task: PeriodicTask, field: str, value) -> None:
    if field == "task":
        task.task = value
    elif field == "queue":
        # The routing key must name the same queue (declared queues are bound
        # to a direct exchange of their own name).
        task.queue, task.routing_key, task.exchange = value, value, None
    elif field == "kwargs":
        task.kwargs = json.dumps(value)
    elif field == "schedule":
        if value["type"] == "crontab":
            spec = {k: v for k, v in value.items() if k != "type"}
            task.crontab = CrontabSchedule.objects.filter(**spec).first() or \
                CrontabSchedule.objects.create(**spec)
            task.interval = None
        else:
            task.interval, _ = IntervalSchedule.objects.get_or_create(
                every=value["every"], period=IntervalSchedule.SECONDS)
            task.crontab = None
        task.solar = task.clocked = None


def _describe_schedule(spec: dict) -> str:
    if spec.get("type") == "crontab":
        return (f"crontab {spec['minute']} {spec['hour']} {spec['day_of_month']} "
                f"{spec['month_of_year']} {spec['day_of_week']} ({spec['timezone']})")
    if spec.get("type") == "interval":
        return f"every {spec['every']} s"
    return "another kind of schedule"


def _show(field: str, value) -> str:
    return _describe_schedule(value) if field == "schedule" else json.dumps(value)


@dataclass(frozen=True)
class SyncReport:
    changes: list[str]  # what was written; empty when the database already agreed
    kept: list[str]     # admin edits left in place


@transaction.atomic
def schedules_sync(*, topology: Topology = TOPOLOGY, tz: str | None = None) -> SyncReport:
    """Create/update the database beat entries from the topology; reports what changed.

    Three-way merge per field (task, schedule, queue, kwargs), against what
    the previous sync wrote:

    * topology changed since the last sync  -> the topology's value is written
      (it wins even over an admin edit of the same field, and says so);
    * only the database changed (an admin edit) -> the edit is kept;
    * ``enabled`` belongs to operators: set on creation only.

    Entries not in the topology (made by hand in the admin) are never touched;
    an entry removed from the topology is disabled, not deleted.
    """
    tz = tz or settings.CELERY_TIMEZONE
    changes: list[str] = []
    kept: list[str] = []
    declared = {entry.name for entry in topology.schedules}
    for entry in topology.schedules:
        desired = _desired(entry, tz)
        record = SyncedSchedule.objects.filter(name=entry.name).first()
        last = record.fields if record else {}
        task = PeriodicTask.objects.filter(name=entry.name).select_related(
            "crontab", "interval").first()
        if task is None:
            task = PeriodicTask(name=entry.name, enabled=True,
                                description="Declared in the project's topology "
                                            "(python manage.py sync_schedules).")
            for field in MANAGED_FIELDS:
                _apply(task, field, desired[field])
            task.save()
            changes.append(f"created {entry.name}: {entry.task} on {entry.queue}, "
                           f"{_describe_schedule(desired['schedule'])}")
        else:
            current = _current(task)
            updated = []
            for field in MANAGED_FIELDS:
                if current[field] == desired[field]:
                    continue
                if field in last and last[field] == desired[field]:
                    kept.append(f"kept admin edit of {entry.name}.{field}: "
                                   f"{_show(field, current[field])} "
                                   f"(topology still says {_show(field, desired[field])})")
                    continue
                note = (" (overrides an admin edit)"
                        if field in last and current[field] != last[field] else "")
                _apply(task, field, desired[field])
                updated.append(field)
                changes.append(f"updated {entry.name}.{field}: {_show(field, current[field])} -> "
                               f"{_show(field, desired[field])}{note}")
            if updated:
                task.save()
        if last != desired:
            SyncedSchedule.objects.update_or_create(name=entry.name, defaults={"fields": desired})
    for record in SyncedSchedule.objects.exclude(name__in=declared):
        task = PeriodicTask.objects.filter(name=record.name, enabled=True).first()
        if task is not None:
            task.enabled = False
            task.save()  # through save(), so beat's change tracking sees it
            changes.append(f"disabled {record.name}: no longer in the topology")
        record.delete()
    if changes:
        from queueworks.ops.audit import audit_record

        audit_record(action="schedule.sync", target="topology", outcome=AuditEntry.OK,
                     via="sync", detail={"changes": changes})
    return SyncReport(changes=changes, kept=kept)


# -- dead letters ----------------------------------------------------------------------
REQUEUE_DEAD_LETTERS = "ops.requeue_dead_letters"
REQUEUE_ANY_DEAD_LETTER = "ops.requeue_any_dead_letter"


class DeadLetterError(Exception):
    """Refused or failed; the message says why."""


class DeadLetterForbidden(DeadLetterError):
    pass


def dead_letter_requeue_checked(*, letter_id: str, user) -> list[str]:
    """Re-queue the dead letters with this id that ``user`` may: each one's
    task must be on the Task API's allowlist, or the user must hold
    ``ops.requeue_any_dead_letter``.  Each message is checked as it is
    re-queued, so one allowed message never carries another with the same
    id along.  Returns the re-queued ids; raises DeadLetterForbidden when
    every matching message was refused."""
    from queueworks.reliability.services import dead_letter_requeue
    from queueworks.taskapi.allowlist import allowed

    may_requeue_any = user.has_perm(REQUEUE_ANY_DEAD_LETTER)
    refused: list[str] = []

    def may_requeue(task_name: str) -> bool:
        if may_requeue_any or allowed(task_name) is not None:
            return True
        refused.append(task_name)
        return False

    requeued = dead_letter_requeue(dead_letter_id=letter_id,
                                   may_requeue=may_requeue)
    if not requeued and refused:
        raise DeadLetterForbidden(
            f"{refused[0] or 'a message without a task name'} is not on the Task API's allowlist: "
            f"re-queueing it needs the permission {REQUEUE_ANY_DEAD_LETTER}")
    if refused:
        logger.warning("Dead letter %s: re-queued %d, left %d off the allowlist (%s)",
                       letter_id, len(requeued), len(refused), ", ".join(sorted(set(refused))))
    if not requeued:
        raise DeadLetterError(f"dead letter {letter_id} not found (already re-queued?)")
    return requeued


def dead_letter_discard_one(*, letter_id: str) -> int:
    from queueworks.reliability.services import dead_letter_discard

    removed = dead_letter_discard(dead_letter_id=letter_id)
    if not removed:
        raise DeadLetterError(f"dead letter {letter_id} not found (already gone?)")
    return removed
# -- alerts without a watcher ----------------------------------------------------------
def alerts_check(*, now: datetime | None = None) -> list[AlertIncident]:
    """Read the broker and supervisord, then evaluate every alert (the alerts program's round).

    A part that cannot be read is skipped, not closed: an unreachable
    supervisord must not look like a recovered crash loop.
    """
    from queueworks.core.broker_state import BrokerStateError
    from queueworks.ops.programs import ProgramError, program_states

    try:
        from queueworks.limits.fair import fair_queue_states

        # A fair queue's backlog waits in its sub-queues: its alert sees them,
        # and those stranded in sub-queues no longer declared.
        stats = fair_queue_states(TOPOLOGY)
    except BrokerStateError as exc:
        logger.warning("alerts: queue states not read: %s", exc)
        stats = {}
    try:
        programs = program_states()
    except ProgramError as exc:
        logger.warning("alerts: program states not read: %s", exc)
        programs = None
    return alerts_evaluate(stats=stats, now=now, programs=programs)
