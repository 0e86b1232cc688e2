"""/metrics against the live system: real workers in several programs and
processes write the counts, the real web server serves them, a real scrape
is parsed as Prometheus parses it."""

import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from queueworks.core.tasks import heavy_probe, probe
from queueworks.metrics import names
from apps.notifications.models import Notification
from apps.notifications.tasks import send_notification
from apps.testing.services import fault_account_open
from apps.testing.tasks import fault_flaky, noop
from projectname.celery import app
from projectname.topology import TOPOLOGY
from tests.support.live import METRICS_AUTH, PROJECT_ROOT, wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

GRAFANA = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "projectname.json"
PROBE, HEAVY_PROBE = "queueworks.core.tasks.probe", "queueworks.core.tasks.heavy_probe"
NOOP, FLAKY = "apps.testing.tasks.noop", "apps.testing.tasks.fault_flaky"
SEND = "apps.notifications.tasks.send_notification"
TASKS = (PROBE, HEAVY_PROBE, NOOP, FLAKY, SEND)


def scrape(base: str, auth=METRICS_AUTH) -> dict:
    response = requests.get(f"{base}/metrics", auth=auth, timeout=30)
    assert response.status_code == 200, response.text
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def outcome_counts(parsed: dict) -> dict[tuple[str, str], float]:
    return {(s.labels["task"], s.labels["outcome"]): s.value
            for s in parsed[names.TASKS].samples if s.name == f"{names.TASKS}_total"}


def runtime_counts(parsed: dict) -> dict[str, float]:
    return {s.labels["task"]: s.value for s in parsed[names.TASK_RUNTIME].samples
            if s.name == f"{names.TASK_RUNTIME}_count"}


def deltas(before: dict, after: dict) -> dict:
    return {key: after.get(key, 0) - before.get(key, 0)
            for key in set(before) | set(after) if key[0] in TASKS and after.get(key, 0) != before.get(key, 0)}


def test_unauthenticated_scrape_is_refused(live_system):
    base = f"http://127.0.0.1:{live_system.web_port}"
    anonymous = requests.get(f"{base}/metrics", timeout=30)
    assert anonymous.status_code == 401
    assert "authentication required" in anonymous.json()["error"]
    wrong = requests.get(f"{base}/metrics", auth=(METRICS_AUTH[0], "not-it"), timeout=30)
    assert wrong.status_code == 401 and wrong.json() == {"error": "wrong metrics credentials"}


def test_scrape_counts_equal_the_tasks_run_across_worker_programs(live_system):
    base = f"http://127.0.0.1:{live_system.web_port}"
    before = outcome_counts(scrape(base))
    runtimes_before = runtime_counts(scrape(base))

    # Successes on four programs: main_worker (2 prefork processes), heavy_worker,
    # and the bulk lane's two solo programs (tasks that keep no result row).
    probes = [probe.delay(uuid.uuid4().hex) for _ in range(6)]
    heavies = [heavy_probe.delay(uuid.uuid4().hex, 0.3) for _ in range(2)]
    for _ in range(40):
        noop.delay(1)
    # A failure: the notification row does not exist.
    missing = (Notification.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 5000
    failing = send_notification.delay(missing)
    # A retry, then a success.
    run = uuid.uuid4().hex[:12]
    fault_account_open(run_id=run)
    flaky = fault_flaky.delay(run, "metrics-retry", failures=1)
    # A revoke: the worker knows the id is revoked before the message arrives.
    revoked_id = str(uuid.uuid4())
    app.control.revoke(revoked_id)
    node = live_system.node("main_worker")
    wait_for(lambda: revoked_id in ((app.control.inspect(destination=[node], timeout=3).revoked()
                                     or {}).get(node) or []), 60, message="main_worker knows the revoke")
    revoked = probe.apply_async(args=["revoked"], task_id=revoked_id)

    for result in probes + heavies:
        result.get(timeout=120)
    with pytest.raises(Exception, match="does not exist"):
        failing.get(timeout=120)
    assert flaky.get(timeout=120) == "metrics-retry"
    with pytest.raises(Exception):
        revoked.get(timeout=120)
    assert revoked.state == "REVOKED"
    hosts = {result.result["hostname"] for result in probes + heavies}
    assert {live_system.node("main_worker"), live_system.node("heavy_worker")} <= hosts

    expected = {
        (PROBE, "success"): 6, (PROBE, "revoked"): 1,
        (HEAVY_PROBE, "success"): 2,
        (NOOP, "success"): 40,
        (SEND, "failure"): 1,
        (FLAKY, "retry"): 1, (FLAKY, "success"): 1,
    }

    def counted():
        now = deltas(before, outcome_counts(scrape(base)))
        return now if now == expected else None

    # Each worker process writes its tally about once a second.
    try:
        wait_for(counted, 60, interval=1, message="scraped counts equal the tasks run")
    except TimeoutError:
        pytest.fail(f"scraped {deltas(before, outcome_counts(scrape(base)))}, expected {expected}")
    time.sleep(3)  # nothing counted twice later
    final = scrape(base)
    assert deltas(before, outcome_counts(final)) == expected

    # One runtime observation per run (the revoked message never ran; the
    # retried task ran twice), and heavy_probe's 0.3 s shows in its buckets.
    runs = runtime_counts(final)
    assert {task: runs.get(task, 0) - runtimes_before.get(task, 0) for task in TASKS} == \
        {PROBE: 6, HEAVY_PROBE: 2, NOOP: 40, SEND: 1, FLAKY: 2}
    heavy_fast = sum(s.value for s in final[names.TASK_RUNTIME].samples
                     if s.name.endswith("_bucket") and s.labels["task"] == HEAVY_PROBE
                     and s.labels["le"] == "0.25")
    assert heavy_fast == 0

    # Queues, workers and programs of the running system.
    queue_names = set(TOPOLOGY.queue_names())
    consumers = {s.labels["queue"]: s.value for s in final[names.QUEUE_CONSUMERS].samples}
    assert set(consumers) == queue_names and all(value >= 1 for value in consumers.values())
    assert {s.labels["queue"] for s in final[names.QUEUE_OLDEST_WAIT].samples} == queue_names
    assert {s.labels["queue"] for s in final[names.QUEUE_READY].samples} == queue_names
    pools = {s.labels["program"]: s.value for s in final[names.WORKER_POOL_PROCESSES].samples}
    assert pools["main_worker"] == 2 and pools["bulk_worker_1"] == 1 and pools["bulk_worker_2"] == 1
    assert pools["heavy_worker"] >= 1
    running = {s.labels["program"]: s.value for s in final[names.PROGRAM_RUNNING].samples}
    assert all(running[worker.name] == 1 for worker in TOPOLOGY.workers)
    assert {s.labels["source"]: s.value for s in final[names.SOURCE_UP].samples} == \
        {"broker": 1, "database": 1, "workers": 1, "supervisord": 1, "balancer": 1,
         "limits": 1}


def test_a_worker_on_another_host_adds_to_the_same_counts(live_system, tmp_path):
    """A heavy worker node named for another host, outside this host's
    supervisord, takes the heavy queue while heavy_worker is stopped."""
    base = f"http://127.0.0.1:{live_system.web_port}"
    other = "heavy_worker@metrics-host-2"
    before = outcome_counts(scrape(base))
    assert live_system.ctl("stop", "heavy_worker").returncode == 0
    worker = subprocess.Popen(
        [live_system.bin("celery"), "-A", "projectname", "worker", "--queues=heavy",
         f"--hostname={other}", "--pool=prefork", "--concurrency=2", "--prefetch-multiplier=1",
         "--loglevel=WARNING"],
        env=live_system.env, cwd=PROJECT_ROOT,
        stdout=open(tmp_path / "other-host.log", "ab"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (app.control.inspect(destination=[other], timeout=3).active_queues() or {})
                 .get(other), 180, interval=1, message="the other host's worker consuming")
        results = [heavy_probe.delay(uuid.uuid4().hex, 0.1) for _ in range(3)]
        assert {result.get(timeout=120)["hostname"] for result in results} == {other}
        expected = {(HEAVY_PROBE, "success"): 3}
        wait_for(lambda: deltas(before, outcome_counts(scrape(base))) == expected, 60, interval=1,
                 message="the other host's runs counted")
    finally:
        worker.terminate()
        worker.wait(timeout=120)
        live_system.ctl("start", "heavy_worker")
        live_system.wait_workers_ready(["heavy_worker"])
    # Its warm shutdown wrote nothing more, and nothing was counted twice.
    assert deltas(before, outcome_counts(scrape(base))) == {(HEAVY_PROBE, "success"): 3}


def test_grafana_dashboard_uses_only_metrics_a_scrape_has(live_system):
    """Every metric the dashboard's queries name is in a real scrape."""
    dashboard = json.loads(GRAFANA.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"]
                   for target in panel.get("targets", [])]
    assert len(expressions) >= 8
    referenced = {name for expr in expressions for name in re.findall(r"\bprojectname_[a-z_]+", expr)}
    parsed = scrape(f"http://127.0.0.1:{live_system.web_port}")
    # What each family is scraped as: a counter <name>_total, a histogram
    # <name>_bucket/_sum/_count (declared even while it has no samples yet).
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    scraped = {family.name + suffix for family in parsed.values()
               for suffix in suffixes.get(family.type, ("",))}
    missing = sorted(referenced - scraped)
    assert not missing, f"the dashboard queries metrics the scrape does not have: {missing}"
    assert {names.QUEUE_READY, f"{names.TASKS}_total", f"{names.TASK_RUNTIME}_bucket",
            f"{names.BALANCER_DECISIONS}_total"} <= referenced
