"""The dashboard's re-queue checks each message it re-queues, not a first one.

Two dead letters may share an id (a task id reused by a client, the same
message dead-lettered twice).  On a broker vhost nobody consumes, each
message is dead-lettered for real (per-message TTL 0 on a topology queue
without consumers) and then re-queued through the ops service.
"""

import uuid

import amqp
import pytest

from projectname.celery import app
from queueworks.ops.services import DeadLetterForbidden, dead_letter_requeue_checked
from queueworks.reliability.dead_letters import DEAD_LETTER_QUEUE, dead_letters_declare
from tests.support import rabbit
from tests.support.broker import connect, declare_topology_queues, queue_depth
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db]

ALLOWED = "queueworks.core.tasks.probe"          # on the Task API's allowlist
NOT_ALLOWED = "apps.testing.tasks.fault_crash"    # test-only, never allowlisted
QUEUE = "heavy"


@pytest.fixture
def consumerless_vhost():
    vhost = rabbit.create_vhost("dead-letters")
    declare_topology_queues(vhost)
    from kombu import Connection

    with Connection(rabbit.broker_url(vhost)) as connection:
        dead_letters_declare(channel=connection.default_channel)
    try:
        with rabbit.app_publishing_to(app, rabbit.broker_url(vhost)):
            yield vhost
    finally:
        rabbit.delete_vhost(vhost)


def _dead_letter(vhost: str, *, task_id: str, task_name: str) -> None:
    """Published to a queue with nobody consuming and a TTL of 0: RabbitMQ
    dead-letters it at once (reason ``expired``, died in ``QUEUE``)."""
    connection = connect(vhost)
    try:
        channel = connection.channel()
        channel.basic_publish(
            amqp.Message(b'[["t"], {}, {}]', content_type="application/json",
                         content_encoding="utf-8", delivery_mode=2, expiration="0",
                         application_headers={"id": task_id, "task": task_name}),
            exchange="", routing_key=QUEUE)
    finally:
        connection.close()


def _tasks_in(vhost: str, queue: str) -> list[str]:
    connection = connect(vhost)
    try:
        channel = connection.channel()
        names = []
        while (message := channel.basic_get(queue, no_ack=False)) is not None:
            names.append((message.properties.get("application_headers") or {}).get("task"))
        return sorted(names)
    finally:
        connection.close()


def _operator(make_user):
    return make_user(f"requeuer-{uuid.uuid4().hex[:6]}", permissions=("ops.requeue_dead_letters",))


@pytest.mark.parametrize("order", [(ALLOWED, NOT_ALLOWED), (NOT_ALLOWED, ALLOWED)])
def test_only_the_allowlisted_one_of_two_dead_letters_with_one_id_is_requeued(
        consumerless_vhost, make_user, order):
    task_id = str(uuid.uuid4())
    for name in order:
        _dead_letter(consumerless_vhost, task_id=task_id, task_name=name)
    wait_for(lambda: queue_depth(consumerless_vhost, DEAD_LETTER_QUEUE) == 2, 30,
             message="both messages dead-lettered")

    requeued = dead_letter_requeue_checked(letter_id=task_id, user=_operator(make_user))

    assert requeued == [task_id]
    assert _tasks_in(consumerless_vhost, QUEUE) == [ALLOWED]
    assert _tasks_in(consumerless_vhost, DEAD_LETTER_QUEUE) == [NOT_ALLOWED]


def test_a_dead_letter_off_the_allowlist_is_refused_and_stays(consumerless_vhost, make_user):
    task_id = str(uuid.uuid4())
    _dead_letter(consumerless_vhost, task_id=task_id, task_name=NOT_ALLOWED)
    wait_for(lambda: queue_depth(consumerless_vhost, DEAD_LETTER_QUEUE) == 1, 30,
             message="dead-lettered")

    with pytest.raises(DeadLetterForbidden, match="ops.requeue_any_dead_letter"):
        dead_letter_requeue_checked(letter_id=task_id, user=_operator(make_user))

    assert _tasks_in(consumerless_vhost, QUEUE) == []
    assert _tasks_in(consumerless_vhost, DEAD_LETTER_QUEUE) == [NOT_ALLOWED]


def test_the_permission_for_any_dead_letter_requeues_both(consumerless_vhost, make_user):
    task_id = str(uuid.uuid4())
    for name in (ALLOWED, NOT_ALLOWED):
        _dead_letter(consumerless_vhost, task_id=task_id, task_name=name)
    wait_for(lambda: queue_depth(consumerless_vhost, DEAD_LETTER_QUEUE) == 2, 30,
             message="both messages dead-lettered")
    user = make_user(f"anyone-{uuid.uuid4().hex[:6]}",
                     permissions=("ops.requeue_dead_letters", "ops.requeue_any_dead_letter"))

    assert dead_letter_requeue_checked(letter_id=task_id, user=user) == [task_id, task_id]
    assert _tasks_in(consumerless_vhost, QUEUE) == sorted([ALLOWED, NOT_ALLOWED])
    assert _tasks_in(consumerless_vhost, DEAD_LETTER_QUEUE) == []
