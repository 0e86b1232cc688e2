"""The topology is the single source; Celery's settings are derived from it."""

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab
from django.conf import settings
from kombu import Connection

from queueworks.dispatch.compat import celery as compat_celery
from projectname.celery import app
from projectname.topology import TOPOLOGY

ROOT = Path(__file__).resolve().parents[2]
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


# py-amqp by name (pyamqp://, or amqps:// which kombu always serves with
# py-amqp), or Redis.  amqp:// would silently switch to librabbitmq when it
# is installed.
BROKER_SCHEMES = {"pyamqp", "amqps", "redis", "rediss", "redis+socket"}


def _schemes(urls: str) -> set[str]:
    return {url.split("://", 1)[0] for url in urls.split(";") if url.strip()}


def test_broker_url_uses_py_amqp_explicitly():
    assert _schemes(settings.CELERY_BROKER_URL) <= BROKER_SCHEMES, settings.CELERY_BROKER_URL
    # Nothing configured (without the local .env): no default to fall back
    # on, the process refuses and names the setting.
    code = ("import environ; environ.Env.read_env = staticmethod(lambda *a, **k: None);"
            "import django; django.setup()")
    environment = {key: value for key, value in os.environ.items() if key != "CELERY_BROKER_URL"}
    environment.update(DJANGO_SETTINGS_MODULE="projectname.settings", DJANGO_SECRET_KEY="test")
    unset = subprocess.run([sys.executable, "-c", code], env=environment, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert unset.returncode != 0 and "CELERY_BROKER_URL is not set" in unset.stderr, unset.stderr
    # Every example a newcomer copies.
    examples = [line.split("=", 1)[1] for line in (ROOT / ".env.example").read_text().splitlines()
                if line.lstrip("# ").startswith("CELERY_BROKER_URL=")]
    assert examples and all(_schemes(url) <= BROKER_SCHEMES for url in examples), examples
    # What setup writes for development (deploy/bin/ensure-rabbitmq-user.sh),
    # and so what the project's app connects with: py-amqp's transport.
    from kombu.transport.pyamqp import Transport

    from queueworks.core.broker_setup import read_env_file

    written = read_env_file(ROOT / ".env").get("CELERY_BROKER_URL", "")
    assert _schemes(written) == {"pyamqp"}, "run `make install`: .env has no pyamqp:// broker URL"
    assert isinstance(Connection(written).transport, Transport)


def test_crontabs_run_in_the_project_time_zone():
    assert app.conf.timezone == settings.TIME_ZONE


def _first_fire(schedule: crontab, last_run: datetime) -> datetime:
    """Poll is_due minute by minute the way beat does (UTC clock)."""
    last_utc = last_run.astimezone(dt_timezone.utc)
    moment = last_utc + timedelta(minutes=1)
    schedule = crontab(**compat_celery.crontab_fields(schedule), app=app,
                       nowfun=lambda: moment)
    for _ in range(60 * 24 * 4):
        if schedule.is_due(last_utc).is_due:
            return moment.replace(second=0, microsecond=0)
        moment += timedelta(minutes=1)
    raise AssertionError("schedule never fired within four days")


@pytest.fixture
def office_hours():
    """The office-hours crontab, read in Europe/Berlin (the dates below are Berlin's,
    daylight-saving changes included), whatever TIME_ZONE the environment sets."""
    saved = app.conf.timezone
    app.conf.timezone = "Europe/Berlin"
    app.__dict__.pop("timezone", None)
    try:
        yield next(s for s in TOPOLOGY.schedules if s.name == "office-hours-reminders").schedule
    finally:
        app.conf.timezone = saved
        app.__dict__.pop("timezone", None)


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
    assert annotations["queueworks.reliability.tasks.dispatch_delayed_tasks"]["ignore_result"] is True
    # Their failures are still stored.
    assert settings.CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED is True
