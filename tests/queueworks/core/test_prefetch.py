"""Prefetch headroom: messages ready for the next free pool process."""

import pytest

from queueworks.core import prefetch
from queueworks.core.supervisor import worker_environment
from projectname.topology import TOPOLOGY, Worker


def test_main_worker_declares_two_messages_of_headroom_and_it_is_rendered():
    worker = TOPOLOGY.worker_named("main_worker")
    assert worker.prefetch_multiplier == 1 and worker.prefetch_headroom == 2
    assert dict(worker_environment(worker))[prefetch.ENVIRONMENT_VARIABLE] == "2"
    # A priority-9 message is overtaken by at most what the worker holds:
    # fewer than 10 % of a 100-message backlog.
    assert worker.concurrency * worker.prefetch_multiplier + worker.prefetch_headroom < 10
    # No headroom: no variable.
    plain = Worker(name="w", queues=("q",))
    assert prefetch.ENVIRONMENT_VARIABLE not in dict(worker_environment(plain))


def test_out_of_range_headroom_is_refused_by_name():
    with pytest.raises(ValueError, match="prefetch_headroom must be 0-100"):
        Worker(name="w", queues=("q",), prefetch_headroom=-1)


@pytest.mark.parametrize("raw, expected", [("", 0), ("2", 2), ("x", 0), ("-3", 0), ("101", 0)])
def test_the_environment_value_is_read_and_a_bad_one_reported(monkeypatch, caplog, raw, expected):
    monkeypatch.setenv(prefetch.ENVIRONMENT_VARIABLE, raw)
    assert prefetch.headroom_from_environment() == expected
    if raw and expected == 0:
        assert f"WORKER_PREFETCH_HEADROOM={raw!r}" in caplog.text


class _Consumer:
    """What the step uses of Celery's consumer: kombu's own QoS object."""

    def __init__(self, value):
        from kombu.common import QoS

        self.applied = []
        self.qos = QoS(lambda prefetch_count: self.applied.append(prefetch_count), value)


def test_the_step_adds_the_headroom_once_per_consumer_start(monkeypatch):
    monkeypatch.setenv(prefetch.ENVIRONMENT_VARIABLE, "1")
    step = prefetch.PrefetchHeadroom(parent=None)
    consumer = _Consumer(2)
    step.start(consumer)
    assert consumer.applied == [3]
    # A restarted consumer gets a fresh QoS from Celery's initial count.
    consumer = _Consumer(2)
    step.start(consumer)
    assert consumer.applied == [3]
    # "No limit" stays no limit.
    unlimited = _Consumer(0)
    step.start(unlimited)
    assert unlimited.applied == []
