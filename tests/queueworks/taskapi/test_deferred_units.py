"""The outbox writer's decision when the broker does not take a committed
start, without a worker: a broker on a port where nothing listens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from tests.support import rabbit
from tests.support.live import free_port

TASK = "queueworks.core.tasks.probe"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def unreachable_broker():
    from projectname.celery import app

    with rabbit.app_publishing_to(app, f"pyamqp://nobody:unreachable@127.0.0.1:{free_port()}//"):
        yield


def _deferred_total() -> float:
    from queueworks.metrics import names
    from queueworks.metrics.models import TaskTotal

    row = TaskTotal.objects.filter(task_name=TASK, key=names.OUTBOX_DEFERRED_KEY).first()
    return row.value if row else 0.0


def test_a_committed_start_the_broker_refuses_is_kept_unpublished(unreachable_broker, caplog):
    """A start with a short ETA publishes on a connection of its own with a
    confirm wait; the broker refuses the connection: the record stays, the
    outcome says it is not published, the log and the counter say so."""
    from django_celery_results.models import TaskResult

    from queueworks.taskapi.models import TaskRecord
    from queueworks.taskapi.recorded import recorded_task_accept

    accepted = recorded_task_accept(task_name=TASK, args=[], kwargs={"token": "unit-deferred"},
                                    queue="main_worker", priority=None,
                                    run_at=timezone.now() + timedelta(seconds=5))
    assert accepted.published is False and not accepted.duplicate
    record = TaskRecord.objects.get(task_id=accepted.task_id)
    assert record.confirmed_at is None and not record.publish_error
    assert TaskResult.objects.get(task_id=accepted.task_id).status == "PENDING"
    assert _deferred_total() == 1.0
    assert any(accepted.task_id in r.getMessage() and "stays in the outbox" in r.getMessage()
               for r in caplog.records), caplog.text


def test_in_an_open_transaction_the_outcome_is_known_on_commit(unreachable_broker):
    from queueworks.taskapi.recorded import recorded_task_accept

    with transaction.atomic():
        accepted = recorded_task_accept(
            task_name=TASK, args=[], kwargs={"token": "unit-on-commit"}, queue="main_worker",
            priority=None, run_at=timezone.now() + timedelta(seconds=5))
        assert accepted.published is None
    assert accepted.published is False
