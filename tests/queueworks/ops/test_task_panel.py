"""/ops/'s Tasks panel: throughput and runtime percentiles per task name, hour and day."""

from datetime import timedelta

import pytest
from django.utils import timezone

from queueworks.metrics import names
from queueworks.metrics.services import task_tallies_add

pytestmark = pytest.mark.django_db


def test_each_task_shows_its_hour_and_day_with_charts(client, make_user, no_supervisor):
    now = timezone.now().replace(second=0, microsecond=0)
    task_tallies_add(deltas={
        ("queueworks.core.tasks.probe", now - timedelta(minutes=3), "le:0.05"): 120,
        ("queueworks.core.tasks.probe", now - timedelta(minutes=3), names.FAILURE): 2,
        ("queueworks.core.tasks.probe", now - timedelta(hours=6), "le:2.5"): 120,
        ("apps.reports.tasks.build_daily_report", now - timedelta(hours=5), "le:60.0"): 1,
    })
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    response = client.get("/ops/api/snapshot/", HTTP_ACCEPT="application/json")
    tasks = {row["task_name"]: row for row in response.json()["tasks"]}
    probe = tasks["queueworks.core.tasks.probe"]
    assert probe["hour"]["runs"] == 120 and probe["hour"]["per_minute"] == 2.0
    assert probe["hour"]["failures"] == 2
    assert 0.025 < probe["hour"]["p50"] <= 0.05 and probe["hour"]["p95"] <= 0.05
    assert probe["day"]["runs"] == 240 and probe["day"]["p95"] > 1.0
    assert tasks["apps.reports.tasks.build_daily_report"]["hour"] is None
    assert not any(key.startswith("chart") for key in probe)

    html = client.get("/ops/").content.decode()
    assert html.count('data-task="queueworks.core.tasks.probe"') == 2
    assert html.count('aria-label="queueworks.core.tasks.probe: runs per minute, last hour"') == 1
    assert 'aria-label="queueworks.core.tasks.probe: runs per 15 minutes, last day"' in html
    assert "peak 120/min" in html


def test_no_runs_says_so(client, make_user, no_supervisor):
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    assert "no task has finished on a worker in the last day" in client.get("/ops/").content.decode()
