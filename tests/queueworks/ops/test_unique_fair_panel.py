"""/ops/ shows the limits: unique keys waiting and running, duplicates
refused, and each fair-sharing bucket's messages."""

from dataclasses import replace

import pytest

pytestmark = pytest.mark.django_db

TASK = "apps.testing.tasks.unique_job"


def test_the_panel_shows_unique_keys_held_and_duplicates_refused(
        client, make_user, no_supervisor, monkeypatch):
    import queueworks.taskapi.recorded as services
    from queueworks.taskapi.services import recorded_task_accept

    monkeypatch.setattr(services, "_publish_start", lambda **kw: None)
    for tenant in ("acme", "acme", "acme", "globex"):
        recorded_task_accept(task_name=TASK, args=[], kwargs={"tenant_id": tenant, "run_id": "r"},
                             queue="main_worker", priority=None, run_at=None)
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    html = client.get("/ops/").content.decode()
    assert 'id="unique-fair"' in html and f'data-unique-task="{TASK}"' in html
    row = html.split(f'data-unique-task="{TASK}"')[1].split("</tr>")[0]
    # waiting 2, running 0, expired 0, duplicates 2
    assert [cell.split("</td>")[0] for cell in row.split("<td>")[3:7]] == ["2", "0", "0", "2"]
    assert "tenant_id=&#x27;acme&#x27;" in html
    snapshot = client.get("/ops/api/snapshot/", HTTP_ACCEPT="application/json").json()
    unique = {row["task_name"]: row for row in snapshot["unique"]}
    assert unique[TASK]["waiting"] == 2 and unique[TASK]["duplicates"] == 2


def test_the_panel_shows_each_fair_bucket(client, make_user, no_supervisor, monkeypatch):
    from queueworks.core.topology import Route
    from queueworks.limits.declaration import FairShare
    from queueworks.ops import views
    from queueworks.ops.broker import QueueStats

    declared = views.TOPOLOGY
    topology = replace(declared, queues=tuple(
        replace(queue, fair_buckets=4) if queue.name == "heavy" else queue
        for queue in declared.queues)).with_added(
        routes=(Route("apps.testing.tasks.fair_job", "heavy",
                      fair_share=FairShare(key="tenant_id")),))
    monkeypatch.setattr(views, "TOPOLOGY", topology)
    monkeypatch.setattr(views, "queue_stats", lambda names, **options: {
        name: QueueStats(name=name, exists=True, consumers=1,
                         ready=500 if name == "heavy.fair.2" else 0) for name in names})
    client.force_login(make_user("viewer", permissions=("taskapi.view_all_tasks",)))
    html = client.get("/ops/").content.decode()
    table = html.split('data-fair-queue="heavy"')[1].split("</table>")[0]
    assert "1 of 4 buckets waiting" in table and "fair_job by tenant_id" in table
    assert table.count("heavy.fair.") == 4
    assert "<td>500</td>" in table
