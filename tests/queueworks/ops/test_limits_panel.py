"""/ops/ shows the rate and concurrency limits per key: waiting, running,
started, refused and the mean wait before starting."""

import time

import pytest

from queueworks.limits.enforcement import limits_decide
from queueworks.limits.rules import task_limits

pytestmark = pytest.mark.django_db
TASK = "apps.testing.tasks.limited_concurrency"


def test_the_panel_lists_each_limit_and_key(client, make_user, no_supervisor):
    limits = task_limits(TASK)
    now = time.time()
    assert limits_decide(limits=limits, task_id="a", rate_key=None, concurrency_key="acme",
                         since=None, now=now)[0] == 0.0
    # Over the limit: one call waits; it had been waiting 4 s when it first came.
    assert limits_decide(limits=limits, task_id="b", rate_key=None, concurrency_key="acme",
                         since=now - 4, now=now).outcome == "parked"
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    html = client.get("/ops/").content.decode()
    assert 'id="limits"' in html
    assert f'data-limit="{TASK}:concurrency" data-key="acme"' in html
    row = html.split('data-key="acme"', 1)[1].split("</tr>", 1)[0]
    cells = [cell.split("</td>")[0].strip() for cell in row.split("<td>")[1:]]
    # task, limit, key, waiting (with since), running, started, refused, mean wait
    assert cells[1] == "concurrency" and "acme" in cells[2]
    assert cells[3].startswith("1 ")
    assert cells[4] == "1"  # "a" holds the slot
    assert cells[5:7] == ["1", "1"]
    snapshot = client.get("/ops/api/snapshot/", HTTP_ACCEPT="application/json").json()
    assert 'id="limits"' in snapshot["html"]


def test_without_limits_in_use_there_is_no_panel(client, make_user, no_supervisor):
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    assert 'id="limits"' not in client.get("/ops/").content.decode()


def test_a_published_waiter_long_past_its_retry_time_is_not_counted(client, make_user,
                                                                   no_supervisor):
    """Deferred (its message published again) and then cancelled or expired:
    it never starts, so never leaves the list.  A parked call is counted
    however long it waits: the database holds it until its turn."""
    limits = task_limits("apps.testing.tasks.limited_rate")
    for task_id in "abcdefg":
        limits_decide(limits=limits, task_id=task_id, rate_key="acme", concurrency_key=None,
                      since=None, now=100.0)
    concurrency = task_limits(TASK)
    for task_id in "xy":
        limits_decide(limits=concurrency, task_id=task_id, rate_key=None,
                      concurrency_key="acme", since=None, now=100.0)
    from queueworks.limits.selectors import limit_states

    states = {state.kind: state for state in limit_states()}
    assert (states["rate"].waiting, states["rate"].refused) == (0, 6)
    assert (states["concurrency"].waiting, states["concurrency"].refused) == (1, 1)
