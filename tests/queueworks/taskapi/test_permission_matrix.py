"""Every Task API endpoint and /ops/ action, for every role: exactly the status
the matrix says, and the matrix is the one published in docs/security.md.

In-process (Django test client).  Nothing here reaches a broker or
supervisord: publishing happens on commit (never, in a rolled-back test), and
the few calls that would talk to the broker (revoke broadcast, queue
counts, dead letters, program control) are replaced by stand-ins; their real
paths are covered by the live tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django_celery_results.models import TaskResult

from queueworks.apitokens.services import api_token_create
from queueworks.ops.models import AuditEntry
from queueworks.taskapi.models import TaskRecord
from queueworks.taskapi.worker_snapshot import store_snapshot

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[3] / "docs" / "security.md"
TASK = "queueworks.taskapi.tasks.diagnose"
ROLES = ("anonymous", "plain", "viewer", "operator", "staff", "controller")
# What each role holds (groups are created by migrations taskapi 0004, ops 0003).
ROLE_GRANTS = {
    "plain": ((), ()),
    "viewer": (("task viewers",), ()),
    "operator": (("task operators",), ()),
    "staff": ((), ()),  # is_staff=True and nothing else
    "controller": (("task operators",), ("ops.control_programs", "ops.requeue_dead_letters",
                                         "ops.requeue_any_dead_letter",
                                         "taskapi.cancel_system_tasks")),
}

# (row label, method, path, JSON body or form data) -> status per role, in ROLES order.
# OTHERS: a task another user started; BEAT: a task nobody started through the API.
MATRIX = [
    (("list tasks", "GET", "/api/v1/tasks/", None), (401, 200, 200, 200, 200, 200)),
    (("read another user's task", "GET", "/api/v1/tasks/OTHERS/", None),
        (401, 404, 200, 200, 404, 200)),
    (("read a system task", "GET", "/api/v1/tasks/BEAT/", None), (401, 404, 200, 200, 404, 200)),
    (("allowed tasks", "GET", "/api/v1/tasks/allowed/", None), (401, 200, 200, 200, 200, 200)),
    (("workers", "GET", "/api/v1/workers/", None), (401, 403, 200, 200, 403, 200)),
    (("queues", "GET", "/api/v1/queues/", None), (401, 200, 200, 200, 200, 200)),
    (("OpenAPI schema", "GET", "/api/schema/", None), (401, 200, 200, 200, 200, 200)),
    (("start", "POST", "/api/v1/tasks/", {"task": TASK}), (401, 403, 403, 202, 403, 202)),
    (("bulk start", "POST", "/api/v1/tasks/bulk/", {"task": TASK, "kwargs_list": [{}]}),
        (401, 403, 403, 202, 403, 202)),
    (("cancel another user's task", "POST", "/api/v1/tasks/OTHERS/cancel", {}),
        (401, 403, 403, 202, 403, 202)),
    (("cancel a system task", "POST", "/api/v1/tasks/BEAT/cancel", {}),
        (401, 403, 403, 403, 403, 202)),
    (("re-run", "POST", "/api/v1/tasks/DONE/rerun", None), (401, 403, 403, 202, 403, 202)),
    (("dashboard page", "GET", "/ops/", None), (302, 403, 200, 200, 403, 200)),
    (("dashboard data", "GET", "/ops/api/snapshot/", None), (403, 403, 200, 200, 403, 200)),
    (("failed-task search", "GET", "/ops/failures/", None), (302, 403, 200, 200, 403, 200)),
    (("Prometheus metrics", "GET", "/metrics", None), (401, 403, 403, 403, 403, 403)),
    (("dashboard: start a program", "POST", "/ops/programs/beat/start/", {}),
        (403, 403, 403, 403, 403, 202)),
    (("dashboard: restart, confirmed", "POST", "/ops/programs/main_worker/restart/",
     {"confirm": "yes"}), (403, 403, 403, 403, 403, 202)),
    (("dashboard: restart, unconfirmed", "POST", "/ops/programs/main_worker/restart/", {}),
        (403, 403, 403, 403, 403, 400)),
    (("dashboard: re-run a failure", "POST", "/ops/tasks/FAILED/rerun/", {}),
        (403, 403, 403, 202, 403, 202)),
    (("dashboard: re-queue an allowlisted dead letter", "POST",
     "/ops/dead-letters/LISTED/requeue/", {}), (403, 403, 403, 403, 403, 202)),
    (("dashboard: re-queue another dead letter", "POST",
     "/ops/dead-letters/UNLISTED/requeue/", {}), (403, 403, 403, 403, 403, 202)),
    (("dashboard: discard a dead letter, confirmed", "POST", "/ops/dead-letters/LISTED/discard/",
     {"confirm": "yes"}), (403, 403, 403, 403, 403, 202)),
    (("audit log in the admin", "GET", "/admin/ops/auditentry/", None),
        (302, 302, 302, 302, 403, 302)),
]


def _user(role: str) -> User | None:
    if role == "anonymous":
        return None
    groups, permissions = ROLE_GRANTS[role]
    user = User.objects.create_user(f"{role}-user", is_staff=role == "staff")
    user.groups.add(*Group.objects.filter(name__in=groups))
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label,
                                                         codename=codename))
    return user


@pytest.fixture
def world(monkeypatch):
    """Tasks and dead letters to act on; stand-ins for broker and supervisord calls."""
    from queueworks.ops import views as ops_views
    from queueworks.reliability import services as reliability
    from queueworks.taskapi import selectors, services

    someone = User.objects.create_user("someone")
    for task_id, status, starter in (("OTHERS", "PENDING", someone), ("BEAT", "PENDING", None),
                                     ("DONE", "SUCCESS", someone), ("FAILED", "FAILURE", someone)):
        TaskResult.objects.create(task_id=task_id, task_name=TASK, status=status)
        if starter is not None:
            TaskRecord.objects.create(task_id=task_id, task_name=TASK, queue="main_worker",
                                      requested_by=starter)
    store_snapshot([])
    monkeypatch.setattr(services, "_broadcast_revoke", lambda *a, **k: None)
    monkeypatch.setattr(selectors, "queue_list", lambda: [])
    monkeypatch.setattr(ops_views, "program_control",
                        lambda *, name, action: f"{name}: {action} requested")
    letters = {"LISTED": TASK, "UNLISTED": "queueworks.reliability.tasks.not_allowlisted"}

    def requeue(*, dead_letter_id, may_requeue):
        return [dead_letter_id] if may_requeue(letters[dead_letter_id]) else []

    monkeypatch.setattr(reliability, "dead_letter_requeue", requeue)
    monkeypatch.setattr(reliability, "dead_letter_discard", lambda *, dead_letter_id: 1)


def _key_of(user) -> str:
    """One token per user object, created on its first API request."""
    if not hasattr(user, "api_key"):
        user.api_key = api_token_create(user=user, name="matrix")[1]
    return user.api_key


def _request(role: str, user, method: str, path: str, data):
    if path.startswith("/api/"):
        from rest_framework.test import APIClient

        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {_key_of(user)}")
        if method == "GET":
            return client.get(path)
        return client.post(path, data, format="json")
    client = Client()
    if user is not None:
        client.force_login(user)
    if method == "GET":
        return client.get(path)
    return client.post(path, data, HTTP_ACCEPT="application/json")


@pytest.mark.parametrize("role", ROLES)
def test_every_role_gets_exactly_what_the_matrix_says(world, role):
    user = _user(role)
    got, want = {}, {}
    for (label, method, path, data), statuses in MATRIX:
        response = _request(role, user, method, path, data)
        got[label] = response.status_code
        want[label] = statuses[ROLES.index(role)]
        if response.status_code in (401, 403, 404) and path.startswith("/api/"):
            assert set(response.json()) == {"detail", "code", "errors"}, (label, response.json())
    assert got == want


def test_without_view_all_tasks_a_user_lists_only_the_tasks_they_started(world):
    plain, viewer = _user("plain"), _user("viewer")
    TaskResult.objects.create(task_id="MINE", task_name=TASK, status="SUCCESS")
    TaskRecord.objects.create(task_id="MINE", task_name=TASK, queue="main_worker",
                              requested_by=plain)
    for user, expected in ((plain, {"MINE"}), (viewer, {"MINE", "OTHERS", "BEAT", "DONE", "FAILED"})):
        response = _request("x", user, "GET", "/api/v1/tasks/", None)
        assert {row["task_id"] for row in response.json()["results"]} == expected
    assert _request("x", plain, "GET", "/api/v1/tasks/MINE/", None).status_code == 200


def test_an_operator_without_view_all_tasks_cannot_touch_others_tasks(world):
    user = User.objects.create_user("narrow")
    user.user_permissions.add(Permission.objects.get(codename="operate_tasks"))
    assert _request("x", user, "POST", "/api/v1/tasks/OTHERS/cancel", {}).status_code == 404
    assert _request("x", user, "POST", "/api/v1/tasks/DONE/rerun", None).status_code == 404
    assert _request("x", user, "POST", "/api/v1/tasks/", {"task": TASK}).status_code == 202


def test_a_dead_letter_outside_the_allowlist_needs_its_own_permission(world):
    user = User.objects.create_user("letters")
    user.user_permissions.add(Permission.objects.get(codename="requeue_dead_letters"))
    refused = _request("x", user, "POST", "/ops/dead-letters/UNLISTED/requeue/", {})
    assert refused.status_code == 403
    assert "ops.requeue_any_dead_letter" in refused.json()["error"]
    assert _request("x", user, "POST", "/ops/dead-letters/LISTED/requeue/", {}).status_code == 202


def test_every_action_of_an_authenticated_user_is_audited(world):
    operator = _user("operator")
    AuditEntry.objects.all().delete()
    _request("x", operator, "POST", "/api/v1/tasks/", {"task": TASK})
    _request("x", operator, "POST", "/api/v1/tasks/BEAT/cancel", {})
    _request("x", operator, "POST", "/ops/programs/main_worker/stop/", {"confirm": "yes"})
    entries = [(e.action, e.target, e.outcome, e.username, e.address, e.via)
               for e in AuditEntry.objects.order_by("id")]
    assert entries == [
        ("task.start", TASK, "ok", "operator-user", "127.0.0.1", "api"),
        ("task.cancel", "BEAT", "refused", "operator-user", "127.0.0.1", "api"),
        ("program.stop", "main_worker", "refused", "operator-user", "127.0.0.1", "dashboard"),
    ]
    assert AuditEntry.objects.order_by("id").first().detail["task_id"]


def _docs_matrix() -> dict[str, tuple[int, ...]]:
    rows = {}
    text = DOCS.read_text()
    section = text.split("<!-- permission-matrix -->")[1]
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == len(ROLES) + 1 and re.fullmatch(r"\d{3}", cells[1]):
            rows[cells[0]] = tuple(int(cell) for cell in cells[1:])
    return rows


def test_the_matrix_is_the_one_in_docs_security():
    documented = _docs_matrix()
    declared = {f"{label} (`{method} {path}`)": statuses
                for (label, method, path, _), statuses in MATRIX}
    assert documented == declared
