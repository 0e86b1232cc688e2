"""The dashboard against the live system: real RabbitMQ statistics, real supervisord,
real workers, and a real browser."""

import re
import uuid

import pytest
from django.core import mail

from queueworks.core.tasks import heavy_probe, probe
from apps.notifications.models import Notification
from apps.notifications.tasks import send_notification
from queueworks.ops.broker import queue_stats
from queueworks.ops.models import AlertIncident, AuditEntry, TaskRerun
from queueworks.ops.services import alerts_evaluate
from queueworks.reliability.models import Effect
from queueworks.reliability.services import dead_letters_list
from apps.testing.services import fault_account_open
from apps.testing.tasks import fault_flaky
from projectname.topology import TOPOLOGY
from tests.queueworks.ops.conftest import OPS_PERMISSIONS
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_work_waiting_without_a_consumer_is_seen_and_alerted_once(live_system, settings):
    settings.QUEUEWORKS_OPS_NO_CONSUMER_GRACE_SECONDS = 0
    token = uuid.uuid4().hex
    assert live_system.ctl("stop", "heavy_worker").returncode == 0
    try:
        result = heavy_probe.delay(token, 0)

        def waiting():
            # The management API's numbers lag a few seconds behind, each on its own.
            stats = queue_stats(TOPOLOGY.queue_names())
            heavy = stats["heavy"]
            return stats if heavy.ready >= 1 and heavy.consumers == 0 and heavy.oldest_wait is not None \
                else None

        # The management API refreshes its statistics every few seconds.
        stats = wait_for(waiting, 60, interval=1, message="heavy: a waiting message, its age, no consumer")
        assert stats["heavy"].consumers == 0
        # The publish timestamp (queueworks.ops.signals) gives the oldest message's age.
        assert stats["heavy"].oldest_wait is not None and 0 <= stats["heavy"].oldest_wait < 120
        assert stats["main_worker"].consumers >= 1

        incidents = alerts_evaluate(stats=stats)
        assert ("heavy", AlertIncident.KIND_NO_CONSUMER) in {(i.queue, i.kind) for i in incidents}
        alerts_evaluate(stats=queue_stats(TOPOLOGY.queue_names()))
        assert len(mail.outbox) == 1
        assert "no consumer" in mail.outbox[0].body
    finally:
        live_system.ctl("start", "heavy_worker")
        live_system.wait_workers_ready(["heavy_worker"])
    assert result.get(timeout=60)["token"] == token

    def drained():
        stats = queue_stats(TOPOLOGY.queue_names())
        return stats if stats["heavy"].ready == 0 and stats["heavy"].consumers >= 1 else None

    alerts_evaluate(stats=wait_for(drained, 60, interval=1, message="heavy drained"))
    incident = AlertIncident.objects.get(queue="heavy", kind=AlertIncident.KIND_NO_CONSUMER)
    assert incident.closed_at is not None


def test_staff_operates_the_system_from_ops_in_a_real_browser(live_system, browser, make_user,
                                                             test_output_dir):
    make_user("operator", staff=True, permissions=OPS_PERMISSIONS)
    # A dead letter: fails 4 times (first run + 3 retries), then succeeds once re-queued.
    run = uuid.uuid4().hex[:12]
    fault_account_open(run_id=run)
    doomed = fault_flaky.delay(run, "ops-requeue", failures=4)
    # A failed task: its notification row did not exist yet.
    missing_id = (Notification.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1000
    failed = send_notification.delay(missing_id)
    with pytest.raises(Exception, match="does not exist"):
        failed.get(timeout=60)
    # Some traffic for the activity chart.
    for _ in range(3):
        probe.delay(uuid.uuid4().hex).get(timeout=30)
    # The missing row arrives; a re-run will now succeed.
    Notification.objects.create(pk=missing_id, recipient="ann@example.com", subject="Hi", body="Hello")

    base = f"http://127.0.0.1:{live_system.web_port}"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(f"{base}/admin/login/?next=/ops/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "operator-pass-9x!")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/ops/")
    (test_output_dir / "ops-dashboard.html").write_text(page.content())  # for a failing run

    # Queues and workers of the running system.  (RabbitMQ's statistics lag a
    # few seconds and a loaded machine may miss a 1 s inspect reply: reload
    # until the page has caught up with a program another test restarted.)
    def everything_up():
        page.reload()
        consumers = [page.locator(f"#queues [data-queue='{queue}'] .consumers").inner_text().strip()
                     for queue in TOPOLOGY.queue_names()]
        online = [page.locator(f"#workers tr[data-worker='{worker.name}'] td").nth(1).inner_text()
                  for worker in TOPOLOGY.workers]
        return "0" not in consumers and set(online) == {"online"}

    wait_for(everything_up, 60, interval=2, message="/ops/ shows every queue consumed, every worker online")
    for worker in TOPOLOGY.workers:
        row = page.locator(f"#workers tr[data-worker='{worker.name}']")
        assert row.locator(".state").inner_text() == "RUNNING"
        assert live_system.node(worker.name) in row.inner_text()
        assert set(row.locator("td").nth(2).inner_text().replace(" ", "").split(",")) == \
            set(worker.queues)
    assert page.locator("#programs .state.RUNNING").count() == len(live_system.states())
    assert page.locator("#queues figure.chart svg").count() == len(TOPOLOGY.queue_names())
    # The page refreshes itself from the JSON endpoint (every OPS_REFRESH_SECONDS).
    snapshot = page.request.get(f"{base}/ops/api/snapshot/", headers={"Accept": "application/json"})
    assert snapshot.ok
    assert {q["name"]: q["consumers"] >= 1 for q in snapshot.json()["queues"]} == \
        {name: True for name in TOPOLOGY.queue_names()}
    first = page.locator("#updated").inner_text()
    page.wait_for_function(f"document.getElementById('updated').textContent !== {first!r}",
                           timeout=60_000)

    # The dead letter is listed; one click re-queues it to the queue it died in.
    wait_for(lambda: doomed.id in {d.id for d in dead_letters_list(limit=1000)}, 90,
             message="dead-lettered")
    page.goto(f"{base}/ops/")
    letter_row = page.locator(f"#dead-letters tr[data-dead-letter='{doomed.id}']")
    assert "main_worker" in letter_row.inner_text()
    assert "apps.testing.tasks.fault_flaky" in letter_row.inner_text()
    letter_row.locator("button", has_text="Re-queue").click()
    page.wait_for_load_state()
    assert f"re-queued {doomed.id}" in page.locator(".messages li").first.inner_text()
    wait_for(lambda: Effect.objects.filter(key=f"fault:{run}:ops-requeue").exists(), 60,
             message="re-queued task ran")

    # One click re-runs the failed task; it runs on its worker.
    failure_row = page.locator(f"#failures tr[data-task-id='{failed.id}']")
    assert "DoesNotExist" in failure_row.inner_text()
    failure_row.locator("button[name=rerun]").click()
    page.wait_for_load_state()
    message = page.locator(".messages li").first.inner_text()
    assert re.search(r"Re-run of apps\.notifications\.tasks\.send_notification queued as [0-9a-f-]{36}", message)
    rerun = TaskRerun.objects.get(original_task_id=failed.id)
    assert rerun.new_task_id in message
    from django_celery_results.models import TaskResult

    done = wait_for(lambda: TaskResult.objects.filter(task_id=rerun.new_task_id, status="SUCCESS").first(),
                    60, message="re-run succeeded")
    assert done.worker == live_system.node("main_worker")
    assert Notification.objects.get(pk=missing_id).sent_at is not None

    # Restart a worker from its row: supervisord's XML-RPC, POST with CSRF.
    before = live_system.rpc().getProcessInfo("heavy_worker")["pid"]
    try:
        page.locator("#workers tr[data-worker='heavy_worker'] button", has_text="Restart").click()
        # A confirmation page first: the restart happens only on its confirm.
        page.wait_for_load_state()
        assert live_system.rpc().getProcessInfo("heavy_worker")["pid"] == before
        page.click("#confirm")
        page.wait_for_load_state()
        assert "heavy_worker: restart requested" in page.locator(".messages li").first.inner_text()
        wait_for(lambda: live_system.rpc().getProcessInfo("heavy_worker")["pid"] not in (0, before),
                 90, interval=0.5, message="heavy_worker restarted")
    finally:
        live_system.wait_running(["heavy_worker"], timeout=90)
        live_system.wait_workers_ready(["heavy_worker"], timeout=90)

    # Each action is in the audit log: who, from where, what, how it ended.
    entries = {entry.action: entry for entry in AuditEntry.objects.filter(username="operator")}
    assert {"dead_letter.requeue", "task.rerun", "program.restart"} <= set(entries), entries
    assert all(entry.outcome == "ok" and entry.address == "127.0.0.1" for entry in entries.values())
    assert entries["program.restart"].target == "heavy_worker"

    page.goto(f"{base}/ops/")
    assert page.locator("#audit tr[data-audit='program.restart']").count() >= 1
    assert "re-run SUCCESS" in page.locator(f"#failures tr[data-task-id='{failed.id}']").inner_text()
    page.locator("#workers tr[data-worker='heavy_worker'] td.online").wait_for()
    path = test_output_dir / "ops-dashboard-actions.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000


# Where each element sits, measured by the browser: (element, its panel).
GEOMETRY = """() => {
  const box = (element) => { const r = element.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height}; };
  const buttons = [...document.querySelectorAll('#workers button, #programs button')].map((button) => ({
    text: button.textContent.trim(), row: button.closest('tr').dataset.worker || button.closest('tr').dataset.program,
    box: box(button), panel: box(button.closest('section'))}));
  const charts = (selector) => [...document.querySelectorAll(selector)].map((svg) => box(svg));
  const overflowing = [...document.querySelectorAll('section')].filter(
    (section) => section.scrollWidth > section.clientWidth + 1).map((section) => section.id);
  return {buttons, queueCharts: charts('#queues figure.chart svg'), taskCharts: charts('#tasks figure.chart svg'),
          overflowing, pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth};
}"""


@pytest.mark.parametrize("width", [1024, 1440])
def test_ops_reads_well_at_1024_px_and_wider(live_system, browser, make_user, test_output_dir, width):
    """Every program button inside its panel, charts of a readable size, no
    sideways scrolling; a screenshot per width (docs/ops-dashboard-<width>.png)."""
    from queueworks.metrics.models import TaskTotal

    make_user(f"layout{width}", staff=True, permissions=OPS_PERMISSIONS)
    # Traffic for the charts: the main lane, the heavy lane, the bulk lane, one failure.
    results = [probe.delay(uuid.uuid4().hex) for _ in range(8)] + [heavy_probe.delay(uuid.uuid4().hex, 0.2)]
    missing = (Notification.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 7000
    failed = send_notification.delay(missing)
    for result in results:
        result.get(timeout=60)
    with pytest.raises(Exception, match="does not exist"):
        failed.get(timeout=60)
    wait_for(lambda: TaskTotal.objects.filter(task_name="apps.notifications.tasks.send_notification",
                                              key="failure").exists(), 30, message="tallies written")

    base = f"http://127.0.0.1:{live_system.web_port}"
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(f"{base}/admin/login/?next=/ops/")
    page.fill("#id_username", f"layout{width}")
    page.fill("#id_password", f"layout{width}-pass-9x!")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/ops/")

    def workers_listed():
        page.reload()
        return page.locator("#workers .online").count() == len(TOPOLOGY.workers)

    wait_for(workers_listed, 60, interval=2, message="/ops/ shows every worker online")
    assert page.locator("#tasks tr[data-task='queueworks.core.tasks.probe']").count() == 2
    geometry = page.evaluate(GEOMETRY)
    path = test_output_dir / f"ops-dashboard-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000

    assert geometry["pageWidth"] <= geometry["viewport"], "the page scrolls sideways"
    assert geometry["overflowing"] == [], f"panels wider than their box: {geometry['overflowing']}"
    # Start/Stop/Restart of every worker and every program (web has no Stop).
    assert len(geometry["buttons"]) == 3 * len(TOPOLOGY.workers) + 3 * len(live_system.states()) - 1
    for button in geometry["buttons"]:
        inside, panel = button["box"], button["panel"]
        assert panel["left"] <= inside["left"] and inside["right"] <= panel["right"] and \
            panel["top"] <= inside["top"] and inside["bottom"] <= panel["bottom"], \
            f"{button['row']} {button['text']} sticks out of its panel: {inside} vs {panel}"
    assert len(geometry["queueCharts"]) == len(TOPOLOGY.queue_names())
    for chart in geometry["queueCharts"]:
        assert chart["width"] >= 250 and 60 <= chart["height"] <= 120, chart
    assert geometry["taskCharts"]
    for chart in geometry["taskCharts"]:
        assert chart["width"] >= 150 and chart["height"] >= 32, chart

    # The failed-task search: a bad field is named on the form, a good search finds the task.
    page.goto(f"{base}/ops/failures/?error=does+not+exist&since=yesterday")
    assert page.locator(".field-error[data-field='since']").inner_text() == "Enter a valid date/time."
    page.fill("#failure-search input[name=since]", "")
    page.select_option("#failure-search select[name=queue]", "main_worker")
    page.click("#failure-search button[type=submit]")
    page.wait_for_load_state()
    assert page.locator(f"#failure-results tr[data-task-id='{failed.id}']").count() == 1
