"""Looking at the broker from a test: what was published, and queue depths
read with an AMQP passive declare (exact at once, unlike the management
API's statistics, which lag by seconds)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import amqp

from tests.support import rabbit


@dataclass(frozen=True)
class Published:
    task: str
    id: str
    args: list
    kwargs: dict
    routing_key: str


@contextmanager
def published_tasks():
    """Every task message this process hands to the broker while inside the block.

    Celery sends ``after_task_publish`` once the producer has published, so
    a task that was only stored, or whose publish waits for a commit that
    never comes, does not appear.
    """
    from celery.signals import after_task_publish

    seen: list[Published] = []

    def record(sender=None, headers=None, body=None, routing_key=None, **_):
        args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) else ([], {})
        seen.append(Published(task=sender, id=(headers or {}).get("id"), args=list(args),
                              kwargs=dict(kwargs), routing_key=routing_key))

    after_task_publish.connect(record, weak=False)
    try:
        yield seen
    finally:
        after_task_publish.disconnect(record)


def connect(vhost: str, hostport: str | None = None,
            auth: tuple[str, str] | None = None) -> amqp.Connection:
    """As the test administrator on the shared broker, or as ``auth`` (a
    throw-away node's own user)."""
    userid, password = auth or rabbit.AUTH
    connection = amqp.Connection(host=hostport or rabbit.AMQP_HOSTPORT, userid=userid,
                                 password=password, virtual_host=vhost)
    connection.connect()
    return connection


def queue_depth(vhost: str, queue: str, *, hostport: str | None = None,
                auth: tuple[str, str] | None = None) -> int | None:
    """Ready messages in ``queue`` now; None when the queue does not exist."""
    connection = connect(vhost, hostport, auth)
    try:
        channel = connection.channel()
        try:
            _, messages, _ = channel.queue_declare(queue, passive=True)
        except amqp.exceptions.NotFound:
            return None
        return messages
    finally:
        connection.close()


def queued_task_ids(vhost: str, queue: str) -> list[str]:
    """The task ids of the messages ready in ``queue`` now.

    Takes each message without acknowledging it, then closes the channel, so
    RabbitMQ puts every one back (marked redelivered): use it on a queue
    nobody is consuming.
    """
    connection = connect(vhost)
    try:
        channel = connection.channel()
        ids = []
        while (message := channel.basic_get(queue, no_ack=False)) is not None:
            ids.append((message.properties.get("application_headers") or {}).get("id"))
        return ids
    finally:
        connection.close()


def declare_topology_queues(vhost: str) -> list[str]:
    """The topology's queues (with their exchanges and arguments) in ``vhost``,
    so whatever is published there is kept and can be counted."""
    from kombu import Connection

    from projectname.celery import app

    with Connection(rabbit.broker_url(vhost)) as connection:
        channel = connection.default_channel
        for queue in app.amqp.queues.values():
            queue(channel).declare()
        return list(app.amqp.queues)
