"""Flower under a URL prefix (FLOWER_URL_PREFIX, as behind a reverse proxy
that serves it at /flower/): the guard (queueworks/core/flower.py) holds
there too.  A second Flower, started as its program starts it
(`manage.py run_flower`), on the live system's broker."""

import pytest
import requests

from tests.support.live import FLOWER_AUTH, free_port, serving

pytestmark = [pytest.mark.live]

PREFIX = "flower"


@pytest.fixture(scope="module")
def prefixed_flower(live_system):
    port = free_port()
    base = f"http://127.0.0.1:{port}/{PREFIX}"
    with serving([live_system.bin("python"), "manage.py", "run_flower", f"--port={port}"],
                 env={**live_system.env, "FLOWER_URL_PREFIX": PREFIX},
                 log_path=live_system.run_dir / "log" / f"flower-prefixed-{port}.log",
                 url=f"{base}/api/workers", auth=FLOWER_AUTH, timeout=120,
                 message="the prefixed Flower answering"):
        yield base


def test_a_task_off_the_allowlist_is_refused_under_the_prefix(prefixed_flower):
    # Registered, harmless, not allowlisted: unguarded, Flower would send it.
    for endpoint in ("apply", "async-apply", "send-task"):
        response = requests.post(f"{prefixed_flower}/api/task/{endpoint}/celery.backend_cleanup",
                                 auth=FLOWER_AUTH, json={"args": []}, timeout=30)
        assert response.status_code == 403, (endpoint, response.status_code, response.text[:300])
        assert "allowlist" in response.json()["task"][0]


def test_worker_control_is_refused_under_the_prefix(prefixed_flower):
    # A node that does not exist: unguarded, Flower answers 404, not a shutdown.
    response = requests.post(f"{prefixed_flower}/api/worker/shutdown/nobody@nowhere",
                             auth=FLOWER_AUTH, timeout=30)
    assert response.status_code == 403, (response.status_code, response.text[:300])
    assert "Task API" in response.json()["detail"]


def test_a_deeply_nested_body_is_a_400_under_the_prefix(prefixed_flower):
    deep = "[" * 100_000 + "]" * 100_000
    response = requests.post(f"{prefixed_flower}/api/task/async-apply/queueworks.core.tasks.probe",
                             auth=FLOWER_AUTH, headers={"content-type": "application/json"},
                             data='{"args": ' + deep + "}", timeout=30)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert "body" in response.json()
