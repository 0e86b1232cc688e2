"""The audit log (dashboard, admin, schedules, retention), confirmations of
destructive dashboard actions, and limited login attempts."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from queueworks.ops import views
from queueworks.ops.audit import audit_prune, audit_record
from queueworks.ops.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def controller(make_user):
    return make_user("controller", permissions=(
        "ops.control_programs", "ops.requeue_dead_letters", "taskapi.view_all_tasks",
        "ops.view_auditentry"))


@pytest.fixture
def programs(monkeypatch):
    calls = []

    def control(*, name, action):
        calls.append((name, action))
        return f"{name}: {action} requested"

    monkeypatch.setattr(views, "program_control", control)
    return calls


@pytest.mark.parametrize("action", ["stop", "restart"])
def test_stop_and_restart_need_a_confirmation(client, controller, programs, action):
    client.force_login(controller)
    url = f"/ops/programs/main_worker/{action}/"
    page = client.post(url)
    assert page.status_code == 200 and programs == []
    html = page.content.decode()
    assert 'name="confirm" value="yes"' in html and f'action="{url}"' in html
    assert client.post(url, HTTP_ACCEPT="application/json").json()["field"] == "confirm"
    assert programs == [] and not AuditEntry.objects.exists()
    response = client.post(url, {"confirm": "yes"})
    assert response.status_code == 302 and programs == [("main_worker", action)]
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.outcome, entry.username, entry.via) == \
        (f"program.{action}", "main_worker", "ok", "controller", "dashboard")


def test_start_needs_no_confirmation(client, controller, programs):
    client.force_login(controller)
    assert client.post("/ops/programs/beat/start/").status_code == 302
    assert programs == [("beat", "start")]


def test_discard_needs_a_confirmation(client, controller, monkeypatch):
    from queueworks.reliability import services as reliability

    discarded = []
    monkeypatch.setattr(reliability, "dead_letter_discard",
                        lambda *, dead_letter_id: discarded.append(dead_letter_id) or 1)
    client.force_login(controller)
    assert client.post("/ops/dead-letters/abc/discard/").status_code == 200
    assert discarded == []
    assert client.post("/ops/dead-letters/abc/discard/", {"confirm": "yes"}).status_code == 302
    assert discarded == ["abc"]
    assert AuditEntry.objects.get().action == "dead_letter.discard"


def test_the_dashboard_shows_the_audit_log_to_those_allowed(client, controller, make_user,
                                                            no_supervisor):
    audit_record(action="task.start", target="queueworks.core.tasks.probe", outcome="ok",
                 user=controller, via="api")
    client.force_login(controller)
    html = client.get("/ops/").content.decode()
    assert 'id="audit"' in html and 'data-audit="task.start"' in html
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    assert 'id="audit"' not in client.get("/ops/").content.decode()


def test_the_admin_lists_entries_and_cannot_change_them(make_user):
    admin = make_user("auditor", staff=True, permissions=("ops.view_auditentry",))
    entry = audit_record(action="task.cancel", target="x", outcome="refused", user=admin)
    client = Client()
    client.force_login(admin)
    assert b"task.cancel" in client.get("/admin/ops/auditentry/").content
    assert client.get("/admin/ops/auditentry/add/").status_code == 403
    assert client.post(f"/admin/ops/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_schedule_edits_in_the_admin_are_audited(make_user):
    admin = make_user("scheduler", staff=True, permissions=(
        "django_celery_beat.change_periodictask", "django_celery_beat.view_periodictask",
        "django_celery_beat.delete_periodictask"))
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(name="nightly", task="queueworks.core.tasks.probe",
                                       interval=every, enabled=True)
    client = Client()
    client.force_login(admin)
    response = client.post("/admin/django_celery_beat/periodictask/", {
        "action": "disable_tasks", "_selected_action": [task.pk]})
    assert response.status_code == 302
    assert not PeriodicTask.objects.get(pk=task.pk).enabled
    entry = AuditEntry.objects.get(action="schedule.change")
    assert (entry.target, entry.username, entry.detail["enabled"], entry.via) == \
        ("nightly", "scheduler", False, "admin")
    # Starting tasks from the schedule admin would bypass the allowlist: not offered.
    page = client.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert "run_tasks" not in page


def test_old_entries_are_pruned_after_the_retention(settings):
    settings.QUEUEWORKS_OPS_AUDIT_RETENTION_DAYS = 30
    old = audit_record(action="task.start", outcome="ok")
    AuditEntry.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=31))
    recent = audit_record(action="task.start", outcome="ok")
    assert audit_prune() == 1
    assert list(AuditEntry.objects.values_list("pk", flat=True)) == [recent.pk]
    call_command("audit_prune")  # the command runs the same prune
    settings.QUEUEWORKS_OPS_AUDIT_RETENTION_DAYS = 0
    AuditEntry.objects.update(at=timezone.now() - timedelta(days=3650))
    assert audit_prune() == 0


def test_forwarded_address_only_from_a_trusted_proxy(rf, settings):
    from queueworks.ops.audit import client_address

    request = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 5.6.7.8")
    settings.QUEUEWORKS_TRUSTED_PROXIES = []
    assert client_address(request) == "10.0.0.1"
    settings.QUEUEWORKS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(request) == "5.6.7.8"


def test_login_attempts_are_limited(make_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    make_user("ann")
    client = Client()
    statuses = [client.post("/accounts/login/", {"username": "ann", "password": "wrong"})
                .status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # the form again with its error, then locked out
    # Now even the right password is refused.
    locked = client.post("/accounts/login/", {"username": "ann", "password": "ann-pass-9x!"})
    assert locked.status_code == 429
    # Another address is not locked out.
    other = Client(REMOTE_ADDR="10.9.9.9")
    assert other.post("/accounts/login/", {"username": "ann",
                                           "password": "ann-pass-9x!"}).status_code == 302
