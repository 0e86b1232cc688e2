"""The delivery limit counts starts that never finished, not deliveries.

With acks late, a task that finished but whose acknowledgement was lost (the
broker connection closed in between) is delivered again; the soak bench
(bench/soak.py, connections closed every 0.5 s) saw probes that had
succeeded five times dead-lettered as "the previous 5 never finished", their
SUCCESS result overwritten with FAILURE."""

import uuid

import pytest

from queueworks.core.tasks import probe
from queueworks.reliability.delivery_limits import DeliveryLimitExceeded, delivery_limit_for
from queueworks.reliability.models import TaskDelivery

pytestmark = pytest.mark.django_db


def _run_redelivered(task, task_id: str, *args):
    """``task`` as a worker runs a message RabbitMQ marked redelivered."""
    task.push_request(id=task_id, hostname="main_worker@test", called_directly=False,
                      is_eager=False, delivery_info={"redelivered": True,
                                                     "routing_key": "main_worker"})
    try:
        return task(*args)
    finally:
        task.pop_request()


def test_a_finished_run_whose_ack_was_lost_is_not_counted_as_never_finished():
    task_id = str(uuid.uuid4())
    for _ in range(delivery_limit_for(probe) + 3):
        token = uuid.uuid4().hex
        assert _run_redelivered(probe, task_id, token)["token"] == token
    assert not TaskDelivery.objects.filter(task_id=task_id, dead_lettered_at__isnull=False)


def test_starts_that_never_finish_still_reach_the_limit():
    from queueworks.reliability.delivery_limits import delivery_record

    task_id = str(uuid.uuid4())
    limit = delivery_limit_for(probe)
    # A worker that dies mid-task never returns: only delivery_record runs.
    for _ in range(limit - 1):
        delivery_record(task_id=task_id, task_name=probe.name, redelivered=True, limit=limit)
    with pytest.raises(DeliveryLimitExceeded, match="never finished"):
        _run_redelivered(probe, task_id, uuid.uuid4().hex)
