"""/ops/ shows the balancer's latest decisions, with the numbers behind each."""

import pytest

from queueworks.balancer.services import balance_decision_record

pytestmark = pytest.mark.django_db


def test_the_panel_lists_the_latest_decisions(client, make_user, no_supervisor):
    balance_decision_record(host="web-1", program="reports_a", queues=("reports_a",), before=2,
                            after=3, reason="reports_a: 40 waiting x 0.50 s mean runtime / 2 "
                                           "processes = 10.0 s expected wait")
    balance_decision_record(host="web-1", program="reports_b", queues=("reports_b",), before=2,
                            after=2, reason="target 1", error="All processes busy")
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    html = client.get("/ops/").content.decode()
    assert 'id="balancer"' in html
    assert 'data-balance="reports_a"' in html and "2 → 3" in html
    assert "10.0 s expected wait" in html
    assert "All processes busy" in html
    # The production topology declares no balance: the panel says so.
    assert "No balancing declared" in html
    snapshot = client.get("/ops/api/snapshot/", HTTP_ACCEPT="application/json").json()
    assert 'data-balance="reports_a"' in snapshot["html"]


def test_without_decisions_the_panel_says_so(client, make_user, no_supervisor):
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    assert "no decisions recorded" in client.get("/ops/").content.decode()
