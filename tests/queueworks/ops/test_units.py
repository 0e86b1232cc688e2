"""Dashboard pieces without the live system: rendering rules, progress, next runs, Flower's guard."""

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_results.models import TaskResult

from queueworks.ops import selectors, views
from queueworks.ops.broker import QueueStats, management_api
from queueworks.ops.models import AlertIncident
from queueworks.ops.services import alerts_evaluate, schedules_sync

pytestmark = pytest.mark.django_db


def _stats(names, **options):
    return {
        "celery": QueueStats(name="celery", exists=True, consumers=1),
        "main_worker": QueueStats(name="main_worker", exists=True, ready=7, consumers=0,
                                  oldest_wait=75.0),
        "heavy": QueueStats(name="heavy", exists=True, ready=1, unacked=1, consumers=1,
                            oldest_wait=3.0),
    }


def test_work_without_a_consumer_is_red_and_alerted_on_the_page(client, make_user, no_supervisor,
                                                               monkeypatch, settings):
    settings.QUEUEWORKS_OPS_NO_CONSUMER_GRACE_SECONDS = 0
    monkeypatch.setattr(views, "queue_stats", _stats)
    monkeypatch.setattr(selectors, "workers_overview", lambda **kw: ([], ""))
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    alerts_evaluate(stats=_stats(None))  # what the alerts program does every round
    html = client.get("/ops/").content.decode()
    assert '<article data-queue="main_worker" class="queue danger">' in html
    assert "work waiting, no consumer" in html
    assert '<article data-queue="heavy" class="queue">' in html
    assert 'id="alerts"' in html
    assert "the oldest message has waited 75 s (threshold 60 s)" in html
    assert "7 message(s) waiting and no consumer" in html


def test_the_page_shows_the_alerts_beat_evaluated_and_evaluates_none(
        client, make_user, no_supervisor, monkeypatch, settings):
    settings.QUEUEWORKS_OPS_NO_CONSUMER_GRACE_SECONDS = 0
    monkeypatch.setattr(views, "queue_stats", _stats)
    monkeypatch.setattr(selectors, "workers_overview", lambda **kw: ([], ""))
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    html = client.get("/ops/").content.decode()
    snapshot = client.get("/ops/api/snapshot/", HTTP_ACCEPT="application/json").json()
    # Work waits with no consumer, yet no incident is opened and nothing is sent.
    assert '<article data-queue="main_worker" class="queue danger">' in html
    assert not AlertIncident.objects.exists() and mail.outbox == []
    assert snapshot["incidents"] == []


def test_active_long_tasks_show_their_progress():
    TaskResult.objects.create(task_id="t-1", status="PROGRESS",
                              result=json.dumps({"current": 30, "total": 120}))
    TaskResult.objects.create(task_id="t-2", status="STARTED", result="null")
    assert selectors._progress_of(["t-1", "t-2", "t-3"]) == {
        "t-1": {"current": 30, "total": 120, "percent": 25}}


def test_schedules_show_the_next_run_in_the_project_time_zone():
    schedules_sync()
    now = datetime(2026, 3, 27, 16, 30, tzinfo=ZoneInfo(settings.TIME_ZONE))  # a Friday
    from django_celery_beat.models import PeriodicTask

    PeriodicTask.objects.filter(name="office-hours-reminders").update(last_run_at=now)
    rows = {row["name"]: row for row in selectors.schedules_overview(now=now)}
    office = rows["office-hours-reminders"]
    assert office["queue"] == "main_worker" and office["enabled"] and office["managed"]
    assert "Monday" in office["schedule"] and "Friday" in office["schedule"]
    assert office["next_run"] == datetime(2026, 3, 27, 17, 0, tzinfo=ZoneInfo(settings.TIME_ZONE))
    assert str(office["next_run"].tzinfo) == settings.TIME_ZONE
    # After 17:00 on Friday the next slot is Monday 08:00 (DST starts that Sunday).
    after = now.replace(hour=17, minute=5)
    PeriodicTask.objects.filter(name="office-hours-reminders").update(last_run_at=after)
    office = {r["name"]: r for r in selectors.schedules_overview(now=after)}["office-hours-reminders"]
    assert office["next_run"] == datetime(2026, 3, 30, 8, 0, tzinfo=ZoneInfo(settings.TIME_ZONE))


def test_activity_counts_finished_tasks_per_queue_and_minute():
    now = timezone.now().replace(second=30, microsecond=0)
    for index, status in enumerate(["SUCCESS", "SUCCESS", "FAILURE"]):
        TaskResult.objects.create(task_id=f"a-{index}", task_name="queueworks.core.tasks.probe",
                                  status=status, date_done=now)
    TaskResult.objects.create(task_id="old", task_name="queueworks.core.tasks.probe", status="SUCCESS")
    # date_done is auto_now: move rows in time with update().
    TaskResult.objects.filter(task_id="old").update(date_done=now - timedelta(hours=2))
    TaskResult.objects.filter(task_id__startswith="a-").update(date_done=now)
    activity = selectors.activity_per_minute(now=now)
    assert activity["main_worker"]["total"][-1] == 3
    assert activity["main_worker"]["failed"][-1] == 1
    assert activity["main_worker"]["last_hour"] == 3
    assert activity["heavy"]["last_hour"] == 0


def test_management_api_uses_the_brokers_vhost(settings, monkeypatch):
    # Celery's broker_url: the environment first, like every program gets it.
    monkeypatch.setenv("CELERY_BROKER_URL", "pyamqp://tasks:s%40cret@rabbit:5672/prod;pyamqp://x@y//")
    settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_USER = settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_PASSWORD = ""
    api = management_api()
    assert (api.user, api.password, api.vhost) == ("tasks", "s@cret", "prod")


def test_flower_refuses_to_start_without_credentials_outside_debug(settings, monkeypatch):
    settings.DEBUG = False
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    with pytest.raises(CommandError, match="FLOWER_BASIC_AUTH is not set"):
        call_command("run_flower", "--port=1")


def test_flower_gets_the_management_api_without_secrets_on_its_command_line(settings):
    from queueworks.core.management.commands.run_flower import broker_api_url

    settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_USER = settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_PASSWORD = ""
    assert broker_api_url() == (f"{settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_URL}/api/", {})
    settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_USER, settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_PASSWORD = "mon", "p@ss"
    url, env = broker_api_url()
    assert url == "" and env["FLOWER_BROKER_API"].endswith("//mon:p%40ss@127.0.0.1:15672/api/")
