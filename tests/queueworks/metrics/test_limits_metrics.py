"""/metrics exposes the rate and concurrency limits per limit and key."""

import base64
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queueworks.limits.enforcement import limits_decide
from queueworks.limits.rules import task_limits
from queueworks.metrics import names

pytestmark = pytest.mark.django_db
TASK = "apps.testing.tasks.limited_concurrency"


def test_waiting_running_starts_refusals_and_wait_seconds(client, quiet_sources,
                                                          scraper_credentials):
    limits = task_limits(TASK)
    now = time.time()
    limits_decide(limits=limits, task_id="a", rate_key=None, concurrency_key="acme",
                  since=None, now=now)
    limits_decide(limits=limits, task_id="b", rate_key=None, concurrency_key="acme",
                  since=None, now=now)
    # A third call that had waited 2.5 s starts on another key.
    limits_decide(limits=limits, task_id="c", rate_key=None, concurrency_key="beta",
                  since=now - 2.5, now=now)
    auth = base64.b64encode(":".join(scraper_credentials).encode()).decode()
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {auth}").content.decode()
    samples = {(s.name, s.labels.get("key")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples
               if s.labels.get("limit") == f"{TASK}:concurrency"}
    assert samples[(names.LIMIT_WAITING, "acme")] == 1
    assert samples[(names.LIMIT_RUNNING, "acme")] == 1
    assert samples[(names.LIMIT_RUNNING, "beta")] == 1
    assert samples[(f"{names.LIMIT_STARTS}_total", "acme")] == 1
    assert samples[(f"{names.LIMIT_REFUSALS}_total", "acme")] == 1
    assert samples[(f"{names.LIMIT_WAIT_SECONDS}_total", "beta")] == pytest.approx(2.5)
    assert ("projectname_metrics_source_up", None) not in samples
    assert 'source="limits"} 1.0' in text
