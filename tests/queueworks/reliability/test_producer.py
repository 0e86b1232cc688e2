"""Producer resilience: confirms on, and a broker that stays down makes
apply_async fail with a clear error after a bounded retry, not hang."""

import time

import pytest
from kombu import Connection
from kombu.exceptions import OperationalError

from apps.testing.tasks import fault_effect
from projectname.celery import app
from tests.support.live import free_port


def test_publisher_confirms_and_a_bounded_publish_retry_are_configured():
    assert app.conf.broker_transport_options["confirm_publish"] is True
    assert app.conf.task_publish_retry is True
    policy = app.conf.task_publish_retry_policy
    worst_case = sum(min(policy["interval_start"] + n * policy["interval_step"], policy["interval_max"])
                     for n in range(policy["max_retries"]))
    assert 5 <= worst_case <= 15
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is True


def test_publishing_to_an_unreachable_broker_fails_clearly_within_the_policy():
    dead = Connection(f"pyamqp://nobody:unreachable@127.0.0.1:{free_port()}//", connect_timeout=1,
                      transport_options=app.conf.broker_transport_options)
    started = time.monotonic()
    with pytest.raises(OperationalError) as raised:
        fault_effect.apply_async(("run", "token"), producer=app.amqp.Producer(dead),
                                 retry_policy={"max_retries": 2, "interval_start": 0.2,
                                               "interval_step": 0.2, "interval_max": 0.5})
    assert time.monotonic() - started < 20
    assert "refused" in str(raised.value).lower()
