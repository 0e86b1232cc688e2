"""/metrics shows the limits: unique keys held per state, duplicates refused,
superseded runs, and the messages of each fair-sharing bucket."""

import pytest

from queueworks.metrics import names
from tests.queueworks.metrics.test_metrics_units import basic, families

TASK = "apps.testing.tasks.unique_job"


@pytest.mark.django_db
def test_scrape_counts_unique_keys_and_duplicates(client, quiet_sources, scraper_credentials,
                                                  monkeypatch):
    import queueworks.taskapi.recorded as services
    from queueworks.limits.unique import unique_run_admit
    from queueworks.taskapi.services import recorded_task_accept

    monkeypatch.setattr(services, "_publish_start", lambda **kw: None)
    ids = [recorded_task_accept(task_name=TASK, args=[],
                                kwargs={"tenant_id": tenant, "run_id": "r"},
                                queue="main_worker", priority=None, run_at=None).task_id
           for tenant in ("a", "a", "b", "c")]
    unique_run_admit(task_name=TASK, task_id=ids[0], args=[],
                     kwargs={"tenant_id": "a", "run_id": "r"})
    parsed = families(client.get("/metrics", **basic(*scraper_credentials)).content.decode())
    claims = {s.labels["state"]: s.value for s in parsed[names.UNIQUE_CLAIMS].samples
              if s.labels["task"] == TASK}
    assert claims == {"waiting": 2, "running": 1, "expired": 0}
    duplicates = {s.labels["task"]: s.value for s in parsed[names.UNIQUE_DUPLICATES].samples}
    assert duplicates[TASK] == 1
    up = {s.labels["source"]: s.value for s in parsed[names.SOURCE_UP].samples}
    assert up["limits"] == 1


def test_fair_buckets_are_gauged_per_queue_bucket_and_state(monkeypatch):
    from queueworks.core import broker_state
    from queueworks.core.broker_state import QueueState
    from queueworks.core.topology import Queue, Route
    from queueworks.limits.declaration import FairShare
    from queueworks.limits.metrics import fair_families
    from queueworks.conf import TOPOLOGY

    topology = TOPOLOGY.with_added(
        queues=(Queue("shared", "fair lane", fair_buckets=2),),
        routes=(Route("apps.testing.tasks.fair_job", "shared",
                      fair_share=FairShare(key="tenant_id")),))
    asked = []

    def states(names_, **options):
        asked.append(list(names_))
        return {name: QueueState(name=name, exists=True, ready=7 if name.endswith(".1") else 0,
                                 unacked=1) for name in names_}

    monkeypatch.setattr(broker_state, "queue_states", states)
    (depth,) = fair_families(topology)
    samples = {(s.labels["bucket"], s.labels["state"]): s.value for s in depth.samples}
    assert asked == [["shared.fair.0", "shared.fair.1"]]
    assert samples == {("0", "ready"): 0, ("0", "unacked"): 1, ("1", "ready"): 7,
                       ("1", "unacked"): 1}
