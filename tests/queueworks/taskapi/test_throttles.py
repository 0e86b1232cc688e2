"""Throttles per user and scope (429 with Retry-After), and the shared workers
snapshot that no request waits for."""

import threading
import time

import pytest
from django.core.cache import cache

from queueworks.taskapi import worker_snapshot
from queueworks.taskapi.worker_snapshot import KEY, LOCK

pytestmark = pytest.mark.django_db

TASK = "queueworks.taskapi.tasks.diagnose"


@pytest.fixture
def rates(settings):
    settings.QUEUEWORKS_TASKAPI_THROTTLE_RATES = {"reads": "3/min", "start": "2/min", "bulk": "1/min",
                                       "anon": "100/min"}


def test_reads_over_the_rate_are_429_with_retry_after(client_for, reader, rates):
    client = client_for(reader)
    assert [client.get("/api/v1/tasks/").status_code for _ in range(3)] == [200] * 3
    response = client.get("/api/v1/tasks/allowed/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["code"] == "throttled"


def test_scopes_and_users_count_separately(client_for, operator, reader, rates):
    api = client_for(operator)
    assert [api.post("/api/v1/tasks/", {"task": TASK}, format="json").status_code
            for _ in range(3)] == [202, 202, 429]
    # Reads are another scope; another user has their own budget.
    assert api.get("/api/v1/tasks/").status_code == 200
    assert client_for(reader).get("/api/v1/tasks/").status_code == 200
    bulk = {"task": TASK, "kwargs_list": [{}]}
    assert [api.post("/api/v1/tasks/bulk/", bulk, format="json").status_code
            for _ in range(2)] == [202, 429]


def _snapshot(age: float, workers=()):
    worker_snapshot.store_snapshot(list(workers), taken_at=time.time() - age)


def test_a_fresh_snapshot_is_served_without_asking_the_broker(monkeypatch, settings):
    settings.QUEUEWORKS_TASKAPI_WORKERS_SNAPSHOT_SECONDS = 5
    monkeypatch.setattr(worker_snapshot, "_refresh_in_background",
                        lambda: pytest.fail("refreshed a fresh snapshot"))
    _snapshot(1, [{"program": "main_worker"}])
    snapshot = worker_snapshot.workers_snapshot()
    assert snapshot.workers == [{"program": "main_worker"}] and 0.9 < snapshot.age < 3


def test_a_stale_snapshot_is_served_at_once_and_refreshed_once(monkeypatch, settings):
    """Many readers of a stale snapshot: all answered at once, one refresh."""
    settings.QUEUEWORKS_TASKAPI_WORKERS_SNAPSHOT_SECONDS = 5
    _snapshot(60, [{"program": "old"}])
    cache.delete(LOCK)
    refreshes, release = [], threading.Event()

    def slow_refresh():  # a broadcast waiting for workers that do not answer
        refreshes.append(1)
        release.wait(10)

    monkeypatch.setattr(worker_snapshot, "workers_snapshot_refresh", slow_refresh)
    monkeypatch.setattr(worker_snapshot, "close_old_connections", lambda: None)
    started = time.monotonic()
    answers = [worker_snapshot.workers_snapshot() for _ in range(20)]
    took = time.monotonic() - started
    release.set()
    assert all(answer.workers == [{"program": "old"}] for answer in answers)
    assert took < 2, took  # nobody waited for the 10 s "broadcast"
    deadline = time.monotonic() + 5
    while not refreshes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert refreshes == [1]
    # The lock is shared through the cache: another process would not refresh either.
    assert cache.add(LOCK, 1, timeout=5) is False


def test_workers_endpoint_answers_503_with_the_stored_broker_error(client_for, operator):
    worker_snapshot.store_snapshot(None, error="connection refused")
    response = client_for(operator).get("/api/v1/workers/")
    assert response.status_code == 503 and "connection refused" in response.json()["detail"]
    _snapshot(2, [])
    response = client_for(operator).get("/api/v1/workers/")
    assert response.status_code == 200 and int(response["Age"]) in (1, 2, 3)


def test_workers_endpoint_sends_the_body_rendered_once_per_refresh(client_for, operator,
                                                                    reader, monkeypatch):
    workers = [{"program": "main_worker", "status": "online", "active": [{"id": "t-1"}]}]
    stored = worker_snapshot.store_snapshot(workers)
    # Authentication and the permission check still run on every request.
    assert client_for(reader).get("/api/v1/workers/").status_code == 403
    assert client_for(None).get("/api/v1/workers/").status_code == 401
    monkeypatch.setattr(worker_snapshot.JSONRenderer, "render",
                        lambda *a, **k: pytest.fail("rendered the snapshot again"))
    for _ in range(3):
        response = client_for(operator).get("/api/v1/workers/")
        assert response.status_code == 200 and response.content == stored.body
        assert response["Content-Type"] == "application/json" and response.json() == workers


def test_a_snapshot_stored_without_a_body_is_still_served(client_for, operator):
    cache.set(KEY, {"workers": [{"program": "old"}], "error": "", "taken_at": time.time()},
              timeout=None)
    assert client_for(operator).get("/api/v1/workers/").json() == [{"program": "old"}]
    assert worker_snapshot.workers_snapshot().workers == [{"program": "old"}]


def test_workers_reads_are_throttled_like_every_read(client_for, operator, rates):
    worker_snapshot.store_snapshot([])
    client = client_for(operator)
    assert [client.get("/api/v1/workers/").status_code for _ in range(4)] == [200] * 3 + [429]
