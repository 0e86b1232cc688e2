"""sync_schedules (topology -> database) and beat's DatabaseScheduler following admin edits."""

import dataclasses
import io
from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django_celery_beat import schedulers as beat_schedulers
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from queueworks.dispatch.compat import celery as compat_celery
from queueworks.ops.models import SyncedSchedule
from queueworks.ops.scheduler import DatabaseScheduler
from queueworks.ops.services import schedules_sync
from projectname.celery import app
from projectname.topology import TOPOLOGY

OFFICE_HOURS = "office-hours-reminders"


def _sync_output() -> str:
    out = io.StringIO()
    call_command("sync_schedules", stdout=out)
    return out.getvalue()


def _topology_with(name: str, **changes):
    schedules = tuple(dataclasses.replace(entry, **changes) if entry.name == name else entry
                      for entry in TOPOLOGY.schedules)
    return dataclasses.replace(TOPOLOGY, schedules=schedules)


@pytest.mark.django_db
def test_sync_creates_every_topology_entry_with_its_queue_and_time_zone_then_changes_nothing():
    first = _sync_output()
    for entry in TOPOLOGY.schedules:
        assert f"created {entry.name}" in first
        task = PeriodicTask.objects.get(name=entry.name)
        assert task.task == entry.task
        assert task.queue == entry.queue and task.routing_key == entry.queue
        assert task.enabled
        if isinstance(entry.schedule, crontab):
            assert str(task.crontab.timezone) == settings.TIME_ZONE
            assert task.crontab.hour == compat_celery.crontab_fields(entry.schedule)["hour"]
        else:
            assert task.interval.every == int(entry.schedule.total_seconds())
    rows = list(PeriodicTask.objects.order_by("name").values())
    crontabs = CrontabSchedule.objects.count()

    assert _sync_output().strip() == "sync_schedules: no changes"
    assert schedules_sync().changes == []
    assert list(PeriodicTask.objects.order_by("name").values()) == rows
    assert CrontabSchedule.objects.count() == crontabs


@pytest.mark.django_db
def test_hand_made_entries_are_kept():
    schedules_sync()
    every_minute = CrontabSchedule.objects.create(minute="*", timezone=settings.TIME_ZONE)
    PeriodicTask.objects.create(name="made-by-hand", task="queueworks.core.tasks.probe",
                                crontab=every_minute, kwargs='{"token": "x"}', queue="heavy")
    before = PeriodicTask.objects.filter(name="made-by-hand").values().get()
    assert schedules_sync().changes == []
    assert PeriodicTask.objects.filter(name="made-by-hand").values().get() == before


@pytest.mark.django_db
def test_an_admin_edit_is_kept_until_the_topology_changes_that_field():
    schedules_sync()
    task = PeriodicTask.objects.get(name=OFFICE_HOURS)
    task.crontab = CrontabSchedule.objects.create(
        minute="0", hour="9-16", day_of_week="mon-fri", timezone=settings.TIME_ZONE)
    task.save()

    report = schedules_sync()  # topology unchanged: the admin's crontab stays
    assert report.changes == []
    assert any(f"kept admin edit of {OFFICE_HOURS}.schedule" in line for line in report.kept)
    assert PeriodicTask.objects.get(name=OFFICE_HOURS).crontab.hour == "9-16"

    # A deploy changes the same entry's crontab: the topology wins, and says so.
    changed = _topology_with(OFFICE_HOURS, schedule=crontab(minute=0, hour="7-18",
                                                            day_of_week="mon-fri"))
    report = schedules_sync(topology=changed)
    assert any("overrides an admin edit" in line for line in report.changes), report
    assert PeriodicTask.objects.get(name=OFFICE_HOURS).crontab.hour == "7-18"
    assert schedules_sync(topology=changed).changes == []


@pytest.mark.django_db
def test_a_queue_change_in_the_topology_moves_queue_and_routing_key():
    schedules_sync()
    moved = _topology_with(OFFICE_HOURS, queue="celery")
    report = schedules_sync(topology=moved)
    assert report.changes == [f'updated {OFFICE_HOURS}.queue: "main_worker" -> "celery"']
    task = PeriodicTask.objects.get(name=OFFICE_HOURS)
    assert (task.queue, task.routing_key) == ("celery", "celery")


@pytest.mark.django_db
def test_an_entry_removed_from_the_topology_is_disabled_not_deleted():
    schedules_sync()
    fewer = dataclasses.replace(TOPOLOGY, schedules=tuple(
        entry for entry in TOPOLOGY.schedules if entry.name != OFFICE_HOURS))
    assert schedules_sync(topology=fewer).changes == [
        f"disabled {OFFICE_HOURS}: no longer in the topology"]
    assert PeriodicTask.objects.get(name=OFFICE_HOURS).enabled is False
    assert schedules_sync(topology=fewer).changes == []


def _next_fire(now: datetime, matches) -> datetime:
    """First whole minute after ``now`` (project zone) that ``matches``."""
    moment = now.astimezone(ZoneInfo(settings.TIME_ZONE)).replace(second=0, microsecond=0)
    for _ in range(60 * 24 * 8):
        moment += timedelta(minutes=1)
        if matches(moment):
            return moment
    raise AssertionError("never fires")


def _beat_next_run(scheduler, name) -> datetime:
    entry = scheduler.schedule[name]
    state = entry.is_due()
    assert not state.is_due
    return datetime.now(ZoneInfo(settings.TIME_ZONE)) + timedelta(seconds=state.next)


class _NoLockScheduler(DatabaseScheduler):
    """The project's scheduler; the beat lock is queueworks.reliability's business."""

    def _acquire_lock(self):
        self.lock = None


@pytest.mark.django_db(transaction=True)
def test_admin_edits_change_beats_next_run_without_a_restart(django_user_model, monkeypatch):
    schedules_sync()
    scheduler = _NoLockScheduler(app=app, lazy=True)
    scheduler.schedule  # noqa: B018 - initial read, as beat does at start
    scheduler.schedule  # noqa: B018 - second read records the change marker

    now = datetime.now(ZoneInfo(settings.TIME_ZONE))
    expected = _next_fire(now, lambda m: m.weekday() < 5 and 8 <= m.hour <= 17 and m.minute == 0)
    assert abs((_beat_next_run(scheduler, OFFICE_HOURS) - expected).total_seconds()) < 5

    # An operator edits the crontab in the Django admin ...
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "root-pass-9x!")
    client = Client()
    client.force_login(admin)
    crontab_row = PeriodicTask.objects.get(name=OFFICE_HOURS).crontab
    minute = (now.minute + 3) % 60
    response = client.post(f"/admin/django_celery_beat/crontabschedule/{crontab_row.pk}/change/", {
        "minute": str(minute), "hour": "*", "day_of_month": "*", "month_of_year": "*",
        "day_of_week": "*", "timezone": settings.TIME_ZONE,
        # The page's inline list of tasks using this crontab, left as it is.
        "periodictask_set-TOTAL_FORMS": "0", "periodictask_set-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, [line for line in response.content.decode().splitlines() if "error" in line.lower()][:20]

    # ... and the running scheduler follows on its next look at the database.
    expected = _next_fire(now, lambda m: m.minute == minute)
    assert abs((_beat_next_run(scheduler, OFFICE_HOURS) - expected).total_seconds()) < 5

    # Disabling it in the admin drops it from beat's schedule.
    task = PeriodicTask.objects.get(name=OFFICE_HOURS)
    response = client.post("/admin/django_celery_beat/periodictask/", {
        "action": "disable_tasks", "_selected_action": [task.pk]})
    assert response.status_code == 302
    assert OFFICE_HOURS not in scheduler.schedule

    # Changing the queue moves exchange and routing key with it.  The clock
    # is set to 06:10, in daily-report's hour: beat loads only crontabs whose
    # hour is near now, and the entry must come from the scheduler itself.
    def daily_report_hour():
        local = datetime.now(ZoneInfo(settings.TIME_ZONE)).replace(hour=6, minute=10)
        return local.astimezone(dt_timezone.utc)

    monkeypatch.setattr(beat_schedulers, "aware_now", daily_report_hour)
    task = PeriodicTask.objects.get(name="daily-report")
    task.queue = "main_worker"
    task.enabled = True
    task.save()
    entry = scheduler.schedule.get("daily-report")
    assert entry is not None, sorted(scheduler.schedule)
    assert (entry.options["queue"], entry.options["exchange"], entry.options["routing_key"]) == \
        ("main_worker", "main_worker", "main_worker")


@pytest.mark.django_db(transaction=True)
def test_a_wiped_schedule_database_is_synced_again_on_the_next_tick():
    from django.db import connection

    schedules_sync()
    scheduler = _NoLockScheduler(app=app, lazy=True)
    scheduler.schedule  # noqa: B018
    scheduler.schedule  # noqa: B018
    with connection.cursor() as cursor:  # what a flush (or a restored empty database) does
        for model in (PeriodicTask, CrontabSchedule, SyncedSchedule):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")
    assert set(scheduler.schedule) >= {entry.name for entry in TOPOLOGY.schedules
                                       if not isinstance(entry.schedule, crontab)}
    assert set(PeriodicTask.objects.values_list("name", flat=True)) >= \
        {entry.name for entry in TOPOLOGY.schedules}


@pytest.mark.django_db(transaction=True)
def test_beat_start_keeps_the_topologys_queue_on_default_entries():
    scheduler = _NoLockScheduler(app=app, lazy=True)
    scheduler.setup_schedule()
    for entry in TOPOLOGY.schedules:
        assert PeriodicTask.objects.get(name=entry.name).queue == entry.queue, entry.name
    assert schedules_sync().changes == [] and schedules_sync().kept == []
