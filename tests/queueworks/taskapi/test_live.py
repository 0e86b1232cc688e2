"""The Task API over HTTP against the live system: the real web server
(gunicorn from deploy/conf.d), the real broker and real worker processes."""

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult

from apps.reports.models import PeriodReport, Sale
from projectname.topology import TOPOLOGY
from tests.queueworks.taskapi.conftest import _make_user
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DIAGNOSE = "queueworks.taskapi.tasks.diagnose"


@pytest.fixture
def api(live_http):
    return live_http(_make_user("live-operator", operator=True))


def _start(api, payload: dict) -> dict:
    response = api.post("/api/v1/tasks/", payload)
    assert response.status_code == 202, response.text
    ticket = response.json()
    assert ticket["state"] == "PENDING"
    assert ticket["status_url"].endswith(f"/api/v1/tasks/{ticket['task_id']}/")
    return ticket


@pytest.mark.postgres
@pytest.mark.rabbitmq4
def test_start_goes_pending_started_success_with_result(api, live_system):
    # A short countdown keeps it queued long enough to look at it.
    ticket = _start(api, {"task": DIAGNOSE, "kwargs": {"seconds": 3, "message": "hello"},
                          "countdown": 3})
    assert ticket["task"] == DIAGNOSE and ticket["queue"] == "main_worker"
    seen: list[str] = []
    # Visible at once, while queued, with what was asked for.
    first = api.get(f"/api/v1/tasks/{ticket['task_id']}/").json()
    assert first["state"] == "PENDING", first
    assert first["kwargs"] == {"seconds": 3, "message": "hello"} and first["args"] == []
    assert first["task"] == DIAGNOSE and first["queue"] == "main_worker"
    assert first["requested_by"] == "live-operator"

    done = api.wait_state(ticket["task_id"], {"SUCCESS", "FAILURE"}, timeout=60, seen=seen)
    assert done["state"] == "SUCCESS", done
    assert seen[0] == "PENDING" and "STARTED" in seen and seen.index("STARTED") < seen.index(
        "SUCCESS"), seen
    assert done["result"]["message"] == "hello"
    assert done["result"]["queue"] == "main_worker"
    assert done["worker"] == live_system.node("main_worker")
    assert done["date_started"] and done["date_done"] and done["error"] is None
    assert done["retries"] == 0


@pytest.mark.postgres
@pytest.mark.rabbitmq4
def test_failing_task_reports_its_error(api, live_http):
    ticket = _start(api, {"task": DIAGNOSE, "kwargs": {"fail": True, "message": "boom on demand"}})
    done = api.wait_state(ticket["task_id"], {"SUCCESS", "FAILURE"}, timeout=60)
    assert done["state"] == "FAILURE"
    assert done["error"]["type"] == "DiagnosticError"
    assert done["error"]["message"] == "boom on demand"
    # Operators read every task, tracebacks included.
    assert "DiagnosticError: boom on demand" in done["error"]["traceback"]
    # Staff status alone reads nothing of another user's task.
    staff = live_http(_make_user("live-staff", staff=True))
    assert staff.get(f"/api/v1/tasks/{ticket['task_id']}/").status_code == 404


def test_progress_of_the_long_report_is_visible_mid_run(api):
    start = date(2015, 1, 1)
    for day in range(0, 3000, 300):
        Sale.objects.create(amount=Decimal("2.50"), sold_at=timezone.make_aware(
            datetime.combine(start + timedelta(days=day), datetime.min.time()) + timedelta(hours=12)
        ))
    report = PeriodReport.objects.create(start_date=start, end_date=start + timedelta(days=2999))
    ticket = _start(api, {"task": "apps.reports.tasks.build_period_report",
                          "args": [report.pk]})
    assert ticket["queue"] == "heavy"
    progress_seen: list[dict] = []

    def finished():
        body = api.get(f"/api/v1/tasks/{ticket['task_id']}/").json()
        if body["state"] == "PROGRESS":
            progress_seen.append(body["progress"])
        return body if body["state"] in ("SUCCESS", "FAILURE") else None

    done = wait_for(finished, 120, interval=0.1, message="report finished")
    assert done["state"] == "SUCCESS", done
    assert done["result"]["sale_count"] == 10
    assert progress_seen, "PROGRESS never observed"
    middle = progress_seen[len(progress_seen) // 2]
    assert middle["total"] == 3000 and 0 < middle["current"] < 3000
    assert middle["percent"] == round(100 * middle["current"] / 3000, 1)
    currents = [p["current"] for p in progress_seen]
    assert currents == sorted(currents)


@pytest.mark.postgres
def test_cancel_of_a_queued_task_holds_while_its_worker_is_offline(api, live_system):
    """The revoke is issued while no worker is listening (all of them are
    stopped, so none can hand its in-memory revoke list to the restarted one
    through mingle); the restarted worker must still refuse the task: the
    database, not worker memory, decides."""
    workers_programs = [w.name for w in TOPOLOGY.workers]
    assert live_system.ctl("stop", *workers_programs).returncode == 0
    try:
        ticket = _start(api, {"task": DIAGNOSE, "kwargs": {"message": "must never run"}})
        task_id = ticket["task_id"]
        queued = api.get(f"/api/v1/tasks/{task_id}/").json()
        assert queued["state"] == "PENDING" and queued["queue"] == "main_worker"

        queues = {q["name"]: q for q in api.get("/api/v1/queues/").json()}
        assert queues["main_worker"]["consumers"] == 0
        assert queues["main_worker"]["no_consumers"] is True
        assert queues["main_worker"]["expected_consumers"] == ["main_worker"]
        assert queues["main_worker"]["messages_ready"] >= 1
        assert "main_worker" in queues["main_worker"]["alert"]

        def none_answer():  # the snapshot is refreshed in the background: poll
            response = api.get("/api/v1/workers/")
            if response.status_code != 200:  # no snapshot yet: ask again
                return None
            workers = {w["program"]: w for w in response.json()}
            return workers if {w["status"] for w in workers.values()} == {"unreachable"} else None

        workers = wait_for(none_answer, 30, interval=0.5, message="no worker in the snapshot")
        assert workers["main_worker"]["queues"] == ["main_worker", "celery"]

        cancelled = api.post(f"/api/v1/tasks/{task_id}/cancel", {})
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["state"] == "REVOKED"
        assert api.get(f"/api/v1/tasks/{task_id}/").json()["state"] == "REVOKED"
    finally:
        live_system.ctl("start", *workers_programs)
        live_system.wait_running(workers_programs, timeout=90)
        live_system.wait_workers_ready(workers_programs, timeout=90)

    # The restarted worker receives the message, refuses it and acks it.
    try:
        wait_for(lambda: f"[{task_id}] was cancelled" in live_system.log_tail("main_worker", 400),
                 60, interval=0.5, message="worker refused the cancelled task")
    except TimeoutError:
        raise AssertionError(live_system.log_tail("main_worker", 60)) from None
    wait_for(lambda: {q["name"]: q for q in api.get("/api/v1/queues/").json()}
             ["main_worker"]["messages_ready"] == 0, 30, message="main_worker queue drained")
    final = api.get(f"/api/v1/tasks/{task_id}/").json()
    assert final["state"] == "REVOKED" and final["date_started"] is None, final
    assert final["result"] is None
    stored = TaskResult.objects.get(task_id=task_id)
    assert stored.status == "REVOKED" and stored.worker == live_system.node("main_worker")


def _held_by_main_worker(api, task_id: str) -> bool | None:
    """Is the task active, reserved or scheduled on main_worker?  None when
    main_worker did not answer the inspect call in time (a loaded machine)."""
    worker = {w["program"]: w for w in api.get("/api/v1/workers/").json()}["main_worker"]
    if worker["status"] != "online":
        return None
    return any(entry["id"] == task_id
               for entry in worker["active"] + worker["reserved"] + worker["scheduled"])


def _refused_by_worker(task_id: str, node: str):
    """The worker's own REVOKED record: it reached the task and did not run it."""
    return TaskResult.objects.filter(task_id=task_id, status="REVOKED", worker=node).first()


@pytest.mark.postgres
def test_cancel_of_a_scheduled_task_held_by_a_worker(api, live_system):
    countdown = 30
    ticket = _start(api, {"task": DIAGNOSE, "countdown": countdown})
    task_id = ticket["task_id"]
    # Wait until the worker holds it as an ETA task (well before its ETA on a
    # slow machine too: the wait is bounded below the countdown), then cancel.
    wait_for(lambda: any(entry["id"] == task_id for worker in api.get("/api/v1/workers/").json()
                         for entry in worker["scheduled"]), countdown - 10,
             message="the worker holding the task as scheduled")
    response = api.post(f"/api/v1/tasks/{task_id}/cancel", {})
    assert response.status_code == 202 and response.json()["state"] == "REVOKED"
    # At its ETA the worker reaches it and refuses it.
    wait_for(lambda: _refused_by_worker(task_id, live_system.node("main_worker")),
             countdown + 60, interval=0.5, message="main_worker refusing the cancelled ETA task")
    final = api.get(f"/api/v1/tasks/{task_id}/").json()
    assert final["state"] == "REVOKED" and final["date_started"] is None, final


@pytest.mark.postgres
def test_cancel_with_terminate_stops_a_running_task(api, live_system):
    ticket = _start(api, {"task": DIAGNOSE, "kwargs": {"seconds": 40}})
    task_id = ticket["task_id"]
    running = api.wait_state(task_id, {"STARTED", "PROGRESS"}, timeout=60)
    assert running["worker"] == live_system.node("main_worker")

    plain = api.post(f"/api/v1/tasks/{task_id}/cancel", {})
    assert plain.status_code == 409 and "terminate" in plain.json()["errors"]

    response = api.post(f"/api/v1/tasks/{task_id}/cancel", {"terminate": True, "signal": "SIGTERM"})
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "REVOKED"

    wait_for(lambda: _held_by_main_worker(api, task_id) is False, 30,
             message="terminated task gone from main_worker (a worker that answered)")
    wait_for(lambda: _refused_by_worker(task_id, live_system.node("main_worker")), 30,
             interval=0.5, message="main_worker recording the terminated task as REVOKED")
    # Neither finished nor redelivered afterwards: main_worker does not hold it again.
    answer = wait_for(lambda: (lambda held: {"held": held} if held is not None else None)(
        _held_by_main_worker(api, task_id)), 30, message="an answer from main_worker")
    assert answer["held"] is False
    final = api.get(f"/api/v1/tasks/{task_id}/").json()
    assert final["state"] == "REVOKED", final
    assert final["cancellation"]["terminate"] is True
    assert final["cancellation"]["signal"] == "SIGTERM"
    assert final["result"] is None
    live_system.wait_workers_ready(["main_worker"], timeout=60)


def test_rerun_starts_a_new_task_with_the_same_call(api):
    first = _start(api, {"task": DIAGNOSE, "args": [0, False, "again"], "priority": 7})
    api.wait_state(first["task_id"], {"SUCCESS"}, timeout=60)
    response = api.post(f"/api/v1/tasks/{first['task_id']}/rerun")
    assert response.status_code == 202, response.text
    second = response.json()
    assert second["task_id"] != first["task_id"] and second["rerun_of"] == first["task_id"]
    assert second["task"] == DIAGNOSE and second["queue"] == "main_worker"
    done = api.wait_state(second["task_id"], {"SUCCESS", "FAILURE"}, timeout=60)
    assert done["state"] == "SUCCESS" and done["result"]["message"] == "again"
    assert done["args"] == [0, False, "again"] and done["priority"] == 7
    assert done["rerun_of"] == first["task_id"]

    listed = api.get("/api/v1/tasks/", params={"task": DIAGNOSE, "state": "SUCCESS"}).json()
    assert {first["task_id"], second["task_id"]} <= {row["task_id"] for row in listed["results"]}


@pytest.mark.rabbitmq4
def test_queue_override_runs_on_the_other_queue(api, live_system):
    ticket = _start(api, {"task": DIAGNOSE, "queue": "heavy"})
    assert ticket["queue"] == "heavy"
    done = api.wait_state(ticket["task_id"], {"SUCCESS", "FAILURE"}, timeout=60)
    assert done["result"]["queue"] == "heavy"
    assert done["worker"] == live_system.node("heavy_worker")
    heavy = api.get("/api/v1/tasks/", params={"queue": "heavy", "task": DIAGNOSE}).json()
    assert ticket["task_id"] in {row["task_id"] for row in heavy["results"]}


def test_workers_and_queues_describe_the_running_system(api, live_system, live_http):
    reader = live_http(_make_user("live-reader", viewer=True))

    def all_online():  # the snapshot is refreshed in the background: poll
        workers = {w["program"]: w for w in reader.get("/api/v1/workers/").json()}
        return workers if all(w["status"] == "online" for w in workers.values()) else None

    workers = wait_for(all_online, 30, interval=0.5, message="every worker in the snapshot")
    assert set(workers) == {w.name for w in TOPOLOGY.workers}
    main = workers["main_worker"]
    assert main["status"] == "online" and main["hostname"] == live_system.node("main_worker")
    assert main["queues"] == sorted(["main_worker", "celery"])
    assert main["pool"]["max_concurrency"] >= 1 and main["uptime"] > 0, main
    # A live figure, not a constant: it grows while the worker keeps running.
    later = wait_for(lambda: (lambda m: m if m["uptime"] > main["uptime"] else None)(
        {w["program"]: w for w in reader.get("/api/v1/workers/").json()}["main_worker"]),
        30, interval=1, message="main_worker's uptime to grow")
    assert later["hostname"] == main["hostname"]
    assert workers["heavy_worker"]["queues"] == ["heavy"]

    queues = {q["name"]: q for q in reader.get("/api/v1/queues/").json()}
    assert set(queues) == set(TOPOLOGY.queue_names())
    for queue in queues.values():
        assert queue["exists"] and queue["consumers"] >= 1 and not queue["no_consumers"]
        assert isinstance(queue["messages_ready"], int)
    assert queues["celery"]["expected_consumers"] == ["main_worker"]
    assert queues["bulk"]["expected_consumers"] == ["bulk_worker_1", "bulk_worker_2"]
    assert workers["bulk_worker_1"]["queues"] == ["bulk"]


def test_scheduled_cleanup_removes_expired_results_and_records(api, live_system):
    from queueworks.taskapi.models import TaskRecord
    from queueworks.taskapi.retention import result_expires
    from projectname.celery import app

    old = timezone.now() - 2 * result_expires()
    for task_id in ("expired-done", "expired-queued"):
        TaskResult.objects.create(task_id=task_id, task_name=DIAGNOSE,
                                  status="SUCCESS" if "done" in task_id else "PENDING")
        TaskRecord.objects.create(task_id=task_id, task_name=DIAGNOSE, queue="main_worker")
    TaskResult.objects.filter(task_id__startswith="expired").update(date_done=old)
    TaskRecord.objects.filter(task_id__startswith="expired").update(accepted_at=old)
    fresh = _start(api, {"task": DIAGNOSE})

    # What beat sends every night, through the real broker to main_worker.
    # Its route keeps no result (fire-and-forget): main_worker's log says it ran.
    cleanup = app.send_task("celery.backend_cleanup", queue="main_worker")
    wait_for(lambda: f"celery.backend_cleanup[{cleanup.id}] succeeded" in live_system.log_tail(
                 "main_worker", lines=5000), 90, message="the cleanup run by main_worker")
    wait_for(lambda: not TaskRecord.objects.filter(task_id__startswith="expired").exists(),
             30, message="expired records removed")
    assert not TaskResult.objects.filter(task_id__startswith="expired").exists()
    assert api.get("/api/v1/tasks/expired-done/").status_code == 404
    assert api.get(f"/api/v1/tasks/{fresh['task_id']}/").status_code == 200


def test_start_reports_its_enqueue_time_and_cpu_in_server_timing(api):
    response = api.post("/api/v1/tasks/", {"task": DIAGNOSE, "kwargs": {"message": "timed"}})
    assert response.status_code == 202, response.text
    timings = dict(part.strip().split(";dur=")
                   for part in response.headers["Server-Timing"].split(","))
    assert set(timings) == {"start", "enqueue", "enqueue-cpu"}, timings
    start, enqueue, cpu = (float(timings[k]) for k in ("start", "enqueue", "enqueue-cpu"))
    # The publish is part of the start; its CPU time is part of its wall time
    # (0.05 ms of slack for the two clocks' granularity).
    assert 0 < enqueue <= start and 0 < cpu <= enqueue + 0.05, timings
    api.wait_state(response.json()["task_id"], {"SUCCESS"}, timeout=60)
