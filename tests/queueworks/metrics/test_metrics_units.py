"""/metrics without the live system: access, tallies, histogram, exposition."""

import base64
import multiprocessing
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queueworks.metrics import names
from queueworks.metrics.models import TaskMinute, TaskTotal
from queueworks.metrics.recorder import Recorder
from queueworks.metrics.selectors import Histogram, task_totals, task_windows
from queueworks.metrics.services import task_minutes_prune, task_tallies_add

pytestmark = pytest.mark.django_db


def basic(username, password):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def families(text):
    return {family.name: family for family in text_string_to_metric_families(text)}


# -- access --------------------------------------------------------------------
def test_anonymous_scrape_is_refused_with_json(client, quiet_sources, scraper_credentials):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    assert "authentication required" in response.json()["error"]


def test_basic_credentials_are_refused_when_none_are_configured(client, quiet_sources, settings):
    settings.QUEUEWORKS_METRICS_USERNAME = settings.QUEUEWORKS_METRICS_PASSWORD = ""
    response = client.get("/metrics", **basic("", ""))
    assert response.status_code == 401
    assert "not configured" in response.json()["error"]


@pytest.mark.parametrize("username,password", [("prometheus", "wrong"), ("other", "scrape-secret-7q!"),
                                               ("prometheus", "")])
def test_wrong_basic_credentials_are_refused(client, quiet_sources, scraper_credentials,
                                             username, password):
    response = client.get("/metrics", **basic(username, password))
    assert response.status_code == 401
    assert response.json() == {"error": "wrong metrics credentials"}


def test_garbage_authorization_header_is_a_401_not_a_traceback(client, quiet_sources,
                                                               scraper_credentials):
    response = client.get("/metrics", HTTP_AUTHORIZATION="Basic %%%not-base64")
    assert response.status_code == 401


def test_scraper_with_the_configured_credentials_gets_the_text_format(client, quiet_sources,
                                                                     scraper_credentials):
    response = client.get("/metrics", **basic(*scraper_credentials))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    parsed = families(response.content.decode())
    assert names.TASKS in parsed and names.SOURCE_UP in parsed


def test_staff_without_the_permission_is_refused(client, quiet_sources, django_user_model):
    user = django_user_model.objects.create_user("staffer", password="x-pass-9!", is_staff=True)
    client.force_login(user)
    response = client.get("/metrics")
    assert response.status_code == 403
    assert response.json() == {"error": "permission metrics.view_metrics required"}


def test_a_user_with_the_permission_may_scrape(client, quiet_sources, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("watcher", password="x-pass-9!")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="metrics",
                                                     codename="view_metrics"))
    client.force_login(user)
    assert client.get("/metrics").status_code == 200


def test_other_methods_get_a_json_405(client, quiet_sources, scraper_credentials):
    response = client.post("/metrics", **basic(*scraper_credentials))
    assert response.status_code == 405
    assert "use GET" in response.json()["error"]


# -- tallies -------------------------------------------------------------------
MINUTE = datetime(2026, 1, 5, 10, 30, tzinfo=timezone.utc)


def test_tallies_add_to_the_minute_row_and_to_the_total():
    task_tallies_add(deltas={("t.a", MINUTE, names.SUCCESS): 2,
                             ("t.a", MINUTE + timedelta(minutes=1), names.SUCCESS): 3})
    task_tallies_add(deltas={("t.a", MINUTE, names.SUCCESS): 1})
    assert TaskTotal.objects.get(task_name="t.a", key=names.SUCCESS).value == 6
    assert TaskMinute.objects.get(task_name="t.a", minute=MINUTE, key=names.SUCCESS).value == 3


def test_pruning_drops_old_minutes_and_keeps_totals():
    task_tallies_add(deltas={("t.a", MINUTE, names.FAILURE): 1})
    task_minutes_prune(now=MINUTE + timedelta(days=3))
    assert not TaskMinute.objects.exists()
    assert task_totals()["t.a"].outcomes == {names.FAILURE: 1}


def test_recorder_counts_outcomes_and_runtime_buckets():
    recorder = Recorder()
    recorder.run_started("id-1")
    recorder.run_finished("id-1", "t.b", succeeded=True)
    recorder.run_started("id-2")
    recorder.run_finished("id-2", "t.b", succeeded=False)  # a retry: counted by its own signal
    recorder.add("t.b", names.RETRY)
    recorder.add("t.b", names.RETRY)
    recorder.flush()
    totals = task_totals()["t.b"]
    assert totals.outcomes == {names.SUCCESS: 1, names.RETRY: 2}
    assert totals.runtime.count == 2
    assert totals.runtime.buckets == {"le:0.005": 2}
    assert 0 <= totals.runtime.total < 0.005


def _hammer(task_name: str, rounds: int) -> None:
    from django.db import connection

    connection.close()  # a forked child must not share the parent's connection
    recorder = Recorder()
    for _ in range(rounds):
        recorder.add(task_name, names.SUCCESS)
        recorder.flush()
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_processes_never_lose_an_increment():
    """Four processes flush 25 times each into the same rows at once."""
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_hammer, args=("t.shared", 25)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    assert TaskTotal.objects.get(task_name="t.shared", key=names.SUCCESS).value == 100


def test_forked_child_forgets_the_parents_unwritten_tally():
    recorder = Recorder()
    recorder.add("t.c", names.SUCCESS)
    recorder.forget_inherited()
    recorder.flush()
    assert not TaskTotal.objects.exists()


# -- histogram -----------------------------------------------------------------
def test_bucket_bounds_are_inclusive_like_prometheus_le():
    assert names.bucket_key(0.0) == "le:0.005"
    assert names.bucket_key(0.005) == "le:0.005"
    assert names.bucket_key(0.0051) == "le:0.01"
    assert names.bucket_key(1800.0) == "le:1800.0"
    assert names.bucket_key(1800.1) == "le:+Inf"


def test_quantiles_interpolate_within_the_bucket_like_prometheus():
    histogram = Histogram(buckets={"le:0.1": 50, "le:0.25": 50})
    assert histogram.quantile(0.5) == pytest.approx(0.1)
    assert histogram.quantile(0.95) == pytest.approx(0.1 + 0.15 * 0.9)
    assert Histogram().quantile(0.5) is None
    assert Histogram(buckets={"le:+Inf": 3}).quantile(0.5) == 1800.0


def test_cumulative_buckets_end_with_inf():
    rows = Histogram(buckets={"le:0.01": 2, "le:1.0": 1, "le:+Inf": 1}).cumulative()
    assert rows[0] == ("0.005", 0) and rows[1] == ("0.01", 2)
    assert dict(rows)["1.0"] == 3 and rows[-1] == ("+Inf", 4)


def test_windows_give_throughput_and_percentiles_per_task():
    now = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    task_tallies_add(deltas={
        ("t.w", now - timedelta(minutes=5), "le:0.1"): 30,
        ("t.w", now - timedelta(minutes=5), names.FAILURE): 1,
        ("t.w", now - timedelta(hours=5), "le:1.0"): 30,
    })
    windows = task_windows(now=now)
    hour, day = windows["hour"][0], windows["day"][0]
    assert (hour.task_name, hour.runs, hour.failures) == ("t.w", 30, 1)
    assert hour.per_minute == pytest.approx(0.5)
    assert hour.p95 <= 0.1
    assert day.runs == 60 and day.p95 > 0.5


# -- exposition ----------------------------------------------------------------
def test_scrape_shows_task_counters_and_histogram(client, quiet_sources, scraper_credentials):
    task_tallies_add(deltas={("t.e", MINUTE, names.SUCCESS): 4, ("t.e", MINUTE, names.FAILURE): 1,
                             ("t.e", MINUTE, "le:0.05"): 5, ("t.e", MINUTE, names.RUNTIME_SUM): 0.2})
    parsed = families(client.get("/metrics", **basic(*scraper_credentials)).content.decode())
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for s in parsed[names.TASKS].samples}
    assert samples[(f"{names.TASKS}_total", (("outcome", "success"), ("task", "t.e")))] == 4
    assert samples[(f"{names.TASKS}_total", (("outcome", "failure"), ("task", "t.e")))] == 1
    assert samples[(f"{names.TASKS}_total", (("outcome", "revoked"), ("task", "t.e")))] == 0
    runtime = {(s.name, s.labels.get("le")): s.value for s in parsed[names.TASK_RUNTIME].samples}
    assert runtime[(f"{names.TASK_RUNTIME}_count", None)] == 5
    assert runtime[(f"{names.TASK_RUNTIME}_bucket", "0.05")] == 5
    assert runtime[(f"{names.TASK_RUNTIME}_sum", None)] == pytest.approx(0.2)
    up = {s.labels["source"]: s.value for s in parsed[names.SOURCE_UP].samples}
    assert up == {"broker": 0, "database": 1, "workers": 0, "supervisord": 0, "balancer": 1,
                  "limits": 1}
    assert names.BALANCER_DECISIONS in parsed


@pytest.mark.django_db
def test_balancer_decisions_are_counted_per_program_direction_and_outcome(
        client, quiet_sources, scraper_credentials):
    from queueworks.balancer.models import BalanceDecision

    for before, after, outcome in ((1, 3, "applied"), (3, 4, "applied"), (4, 2, "applied"),
                                   (2, 3, "refused")):
        BalanceDecision.objects.create(host="web-1", program="heavy_worker", queues="heavy",
                                       processes_before=before, processes_after=after,
                                       outcome=outcome, reason="test")
    parsed = families(client.get("/metrics", **basic(*scraper_credentials)).content.decode())
    counted = {(s.labels["program"], s.labels["direction"], s.labels["outcome"]): s.value
               for s in parsed[names.BALANCER_DECISIONS].samples}
    assert counted == {("heavy_worker", "grow", "applied"): 2,
                       ("heavy_worker", "shrink", "applied"): 1,
                       ("heavy_worker", "grow", "refused"): 1}


def test_refused_result_writes_are_exposed_by_outcome(client, quiet_sources, scraper_credentials):
    minute = datetime(2026, 1, 1, tzinfo=timezone.utc)
    task_tallies_add(deltas={("t.r", minute, names.result_key(names.RESULT_RETRIED)): 3,
                             ("t.r", minute, names.result_key(names.RESULT_REQUEUED)): 1,
                             ("t.r", minute, names.SUCCESS): 4})
    parsed = families(client.get("/metrics", **basic(*scraper_credentials)).content.decode())
    samples = {(s.labels["task"], s.labels["outcome"]): s.value
               for s in parsed[names.RESULT_WRITES].samples if s.name.endswith("_total")}
    assert samples == {("t.r", "retried"): 3.0, ("t.r", "requeued"): 1.0}
    tasks = {s.labels["outcome"]: s.value for s in parsed[names.TASKS].samples
             if s.labels.get("task") == "t.r" and s.name.endswith("_total")}
    assert tasks["success"] == 4.0 and "retried" not in tasks


def test_deferred_starts_are_exposed_per_task(client, quiet_sources, scraper_credentials):
    from queueworks.taskapi.outbox import outbox_deferred_count

    outbox_deferred_count(task_name="t.d")
    outbox_deferred_count(task_name="t.d", amount=2)
    task_tallies_add(deltas={("t.other", datetime(2026, 1, 1, tzinfo=timezone.utc),
                              names.SUCCESS): 1})
    parsed = families(client.get("/metrics", **basic(*scraper_credentials)).content.decode())
    samples = {s.labels["task"]: s.value for s in parsed[names.OUTBOX_DEFERRED].samples
               if s.name.endswith("_total")}
    assert samples == {"t.d": 3.0}
