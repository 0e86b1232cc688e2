"""The topology is the single source; Celery's settings are derived from it."""

from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab
from django.conf import settings

from projectname.celery import app
from projectname.topology import TOPOLOGY

BERLIN = ZoneInfo("Europe/Berlin")


def test_celery_settings_are_derived_from_the_topology():
    assert [q.name for q in settings.CELERY_TASK_QUEUES] == TOPOLOGY.queue_names()
    assert all(q.durable for q in settings.CELERY_TASK_QUEUES)
    assert app.conf.task_default_queue == TOPOLOGY.default_queue
    for route in TOPOLOGY.routes:
        assert app.amqp.router.route({}, route.task)["queue"].name == route.queue


def test_every_beat_entry_names_its_queue():
    for entry in TOPOLOGY.schedules:
        options = app.conf.beat_schedule[entry.name]["options"]
        assert options["queue"] == entry.queue


def test_json_only():
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"


def test_broker_url_uses_py_amqp_explicitly():
    # amqp:// would silently switch to librabbitmq when it is installed.
    assert not settings.CELERY_BROKER_URL.startswith("amqp://")


def test_crontabs_run_in_the_project_time_zone():
    assert app.conf.timezone == settings.TIME_ZONE


def _first_fire(schedule: crontab, last_run: datetime) -> datetime:
    """Poll is_due minute by minute the way beat does (UTC clock)."""
    last_utc = last_run.astimezone(dt_timezone.utc)
    moment = last_utc + timedelta(minutes=1)
    schedule = crontab(
        minute=schedule._orig_minute, hour=schedule._orig_hour,
        day_of_week=schedule._orig_day_of_week, day_of_month=schedule._orig_day_of_month,
        month_of_year=schedule._orig_month_of_year, app=app, nowfun=lambda: moment,
    )
    for _ in range(60 * 24 * 4):
        if schedule.is_due(last_utc).is_due:
            return moment.replace(second=0, microsecond=0)
        moment += timedelta(minutes=1)
    raise AssertionError("schedule never fired within four days")


@pytest.fixture
def office_hours():
    assert settings.TIME_ZONE == "Europe/Berlin", "these dates are chosen for Europe/Berlin"
    return next(s for s in TOPOLOGY.schedules if s.name == "office-hours-reminders").schedule


def test_office_hours_skip_the_weekend(office_hours):
    friday_last_run = datetime(2026, 11, 20, 17, 0, tzinfo=BERLIN)
    assert _first_fire(office_hours, friday_last_run) == datetime(2026, 11, 23, 8, 0, tzinfo=BERLIN)


def test_office_hours_run_hourly_within_the_day(office_hours):
    assert _first_fire(office_hours, datetime(2026, 11, 23, 8, 0, tzinfo=BERLIN)) == \
        datetime(2026, 11, 23, 9, 0, tzinfo=BERLIN)
    assert _first_fire(office_hours, datetime(2026, 11, 23, 17, 0, tzinfo=BERLIN)) == \
        datetime(2026, 11, 24, 8, 0, tzinfo=BERLIN)


@pytest.mark.parametrize("friday, monday_utc_hour", [
    (datetime(2026, 3, 27, 17, 0, tzinfo=BERLIN), 6),   # spring forward: CEST = UTC+2
    (datetime(2026, 10, 23, 17, 0, tzinfo=BERLIN), 7),  # fall back: CET = UTC+1
])
def test_office_hours_follow_local_time_across_dst(office_hours, friday, monday_utc_hour):
    fired = _first_fire(office_hours, friday)
    assert fired.astimezone(BERLIN).hour == 8
    assert fired.astimezone(BERLIN).weekday() == 0
    assert fired.astimezone(dt_timezone.utc).hour == monday_utc_hour


def test_fire_and_forget_routes_become_ignore_result_annotations():
    annotations = TOPOLOGY.celery_annotations()
    for route in TOPOLOGY.routes:
        if route.ignore_result is None:
            assert "ignore_result" not in annotations[route.task]
        else:
            assert annotations[route.task]["ignore_result"] is route.ignore_result
    assert annotations["apps.reliability.tasks.dispatch_delayed_tasks"]["ignore_result"] is True
    # Their failures are still stored.
    assert settings.CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED is True
