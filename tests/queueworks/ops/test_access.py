"""/ops/ needs taskapi.view_all_tasks; every action is POST-only, CSRF-protected and
needs its own permission; staff status grants nothing.  (Who gets what, per
role: tests/queueworks/taskapi/test_permission_matrix.py.)"""

import pytest
from django.test import Client

from queueworks.ops.models import TaskRerun
from projectname.topology import TOPOLOGY

pytestmark = pytest.mark.django_db

ACTIONS = [
    "/ops/programs/main_worker/restart/",
    "/ops/programs/heavy_worker/stop/",
    "/ops/programs/beat/start/",
    "/ops/tasks/some-task-id/rerun/",
    "/ops/dead-letters/some-letter/requeue/",
    "/ops/dead-letters/some-letter/discard/",
]
EVERY_PERMISSION = ("ops.control_programs", "ops.requeue_dead_letters", "taskapi.operate_tasks",
                    "taskapi.view_all_tasks")


def test_anonymous_is_sent_to_login_and_sees_nothing(client):
    response = client.get("/ops/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/ops/")
    snapshot = client.get("/ops/api/snapshot/")
    assert snapshot.status_code == 403
    assert "queues" not in snapshot.json()


@pytest.mark.parametrize("url", ACTIONS)
def test_anonymous_actions_are_refused(client, url):
    response = client.post(url)
    assert response.status_code == 403


def test_staff_without_permissions_is_refused_everything(client, make_user, no_supervisor):
    client.force_login(make_user("staffer", staff=True))
    assert client.get("/ops/").status_code == 403
    assert client.get("/ops/api/snapshot/").status_code == 403
    for url in ACTIONS:
        response = client.post(url, {"confirm": "yes"})
        assert response.status_code == 403, url
        assert "permission" in response.json()["error"]
    assert not TaskRerun.objects.exists()


@pytest.mark.parametrize("url", ACTIONS)
def test_actions_are_post_only(client, make_user, url):
    client.force_login(make_user("operator", permissions=EVERY_PERMISSION))
    assert client.get(url).status_code == 405


@pytest.mark.parametrize("url", ACTIONS)
def test_actions_need_the_csrf_token(make_user, url):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("operator", permissions=EVERY_PERMISSION))
    response = client.post(url, {"confirm": "yes"})
    assert response.status_code == 403
    assert b"CSRF" in response.content


def test_a_viewer_sees_the_page_and_the_json(client, make_user, no_supervisor):
    # Not staff: the permission alone opens the page.
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    page = client.get("/ops/")
    assert page.status_code == 200
    html = page.content.decode()
    for queue in TOPOLOGY.queue_names():
        assert f'data-queue="{queue}"' in html
    # No supervisord in this run dir: the page says so instead of failing.
    assert "supervisord is not reachable" in html
    assert "<script src=" not in html and "cdn" not in html.lower()
    data = client.get("/ops/api/snapshot/", HTTP_ACCEPT="application/json").json()
    assert [q["name"] for q in data["queues"]] == TOPOLOGY.queue_names()
    assert {w["name"] for w in data["workers"]} == {w.name for w in TOPOLOGY.workers}
    assert 'data-queue="heavy"' in data["html"]


def test_unknown_program_and_action_are_clear_errors(client, make_user, monkeypatch):
    from queueworks.ops import programs
    from queueworks.ops.programs import ProgramState

    monkeypatch.setattr(programs, "program_states", lambda: {
        "web": ProgramState("web", "RUNNING", 1, "")})
    client.force_login(make_user("operator", permissions=("ops.control_programs",)))
    response = client.post("/ops/programs/nope/restart/", {"confirm": "yes"},
                           HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json() == {"error": "unknown program 'nope'"}
    response = client.post("/ops/programs/web/explode/", HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert "unknown action 'explode'" in response.json()["error"]
    response = client.post("/ops/programs/web/stop/", {"confirm": "yes"},
                           HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert "serves this page" in response.json()["error"]


def test_activity_chart_is_inline_svg_scaled_to_its_peak_with_failures_marked():
    import re

    from queueworks.ops.charts import activity_svg

    svg = activity_svg(total=[0, 4, 2] + [0] * 57, failed=[0, 1, 0] + [0] * 57, label="main_worker")
    assert "<svg" in svg and 'viewBox="0 0 600 100"' in svg and svg.count('class="fail"') == 1
    assert "peak 4/min" in svg and "last hour" in svg
    # The step area rises to the peak in minute 1 and halfway in minute 2.
    points = re.search(r'class="line" points="([^"]+)"', svg).group(1).split()
    assert points[2:6] == ["10,4.0", "20,4.0", "20,52.0", "30,52.0"]
