"""Task events only while someone listens (queueworks/core/events.py)."""

import pytest
from celery.worker import control

from queueworks.core import events
from queueworks.core.supervisor import worker_environment
from projectname.topology import TOPOLOGY, Worker


def test_main_worker_starts_without_task_events_and_leases_them():
    worker = TOPOLOGY.worker_named("main_worker")
    assert worker.task_events is False and worker.task_events_lease == 30
    environment = dict(worker_environment(worker))
    assert environment["CELERY_WORKER_SEND_TASK_EVENTS"] == "0"
    assert environment[events.ENVIRONMENT_VARIABLE] == "30"
    with pytest.raises(ValueError, match="task_events_lease must be 0-3600 s"):
        Worker(name="w", queues=("q",), task_events=False, task_events_lease=-1)


def test_celery_enable_events_is_wrapped_not_replaced():
    assert control.Panel.data["enable_events"] is events.enable_events
    assert events._celery_enable_events.__module__ == "celery.worker.control"


@pytest.mark.parametrize("raw, expected", [("", 0), ("30", 30), ("x", 0), ("-1", 0)])
def test_lease_from_the_environment(monkeypatch, caplog, raw, expected):
    monkeypatch.setenv(events.ENVIRONMENT_VARIABLE, raw)
    assert events.lease_from_environment() == expected
    if raw and not expected:
        assert f"WORKER_TASK_EVENTS_LEASE={raw!r}" in caplog.text


def test_lease_expiry(monkeypatch):
    monkeypatch.setitem(events._last_request, "at", 100.0)
    # Started with every group on (empty set): never trimmed.
    assert not events.lease_expired(set(), 30, now=1000.0)
    # Task events off already.
    assert not events.lease_expired({"worker"}, 30, now=1000.0)
    # On, asked for 10 s ago: stay on; 31 s ago: off.
    assert not events.lease_expired({"worker", "task"}, 30, now=110.0)
    assert events.lease_expired({"worker", "task"}, 30, now=131.0)
