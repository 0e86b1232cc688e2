"""The pooled publisher (apps/dispatch/publisher.py) on a real broker: messages
are confirmed in the background, re-sent after a lost connection or a nack,
and never dropped silently."""

from __future__ import annotations

import logging
import uuid

import amqp
import pytest

from apps.dispatch.publisher import ConfirmingPublisher
from tests.support import rabbit
from tests.support.live import wait_for

pytestmark = pytest.mark.live


@pytest.fixture
def vhost():
    name = rabbit.create_vhost("publisher")
    yield name
    rabbit.delete_vhost(name)


def _publisher(vhost: str) -> ConfirmingPublisher:
    from kombu import Connection

    def connect():
        connection = Connection(rabbit.broker_url(vhost), connect_timeout=2)
        connection.ensure_connection(max_retries=1)
        return connection

    return ConfirmingPublisher(connect)


def _message(task_id: str) -> amqp.Message:
    return amqp.Message(b"{}", delivery_mode=2, content_type="application/json",
                        application_headers={"id": task_id, "task": "t"})


def _declare(vhost: str, queue: str, **arguments) -> amqp.Connection:
    conn = amqp.Connection(host=rabbit.AMQP_HOSTPORT, userid=rabbit.AUTH[0],
                           password=rabbit.AUTH[1], virtual_host=vhost)
    conn.connect()
    conn.channel().queue_declare(queue, durable=True, auto_delete=False,
                                 arguments=arguments or None)
    return conn


def _depth(conn: amqp.Connection, queue: str) -> int:
    return conn.channel().queue_declare(queue, passive=True).message_count


def _drain_ids(conn: amqp.Connection, queue: str) -> list[str]:
    channel, ids = conn.channel(), []
    while (message := channel.basic_get(queue, no_ack=True)) is not None:
        ids.append(message.properties["application_headers"]["id"])
    return ids


def test_publish_returns_before_the_confirm_which_arrives_in_the_background(vhost):
    conn = _declare(vhost, "q")
    publisher = _publisher(vhost)
    try:
        for _ in range(200):
            publisher.publish(_message(str(uuid.uuid4())), routing_key="q")
        assert publisher.wait_for(timeout=10)
        assert publisher.unconfirmed == 0
        assert _depth(conn, "q") == 200
        # wait_confirm: the caller waits for this one message's confirm.
        publisher.publish(_message("sync"), routing_key="q", wait_confirm=5)
        assert _depth(conn, "q") == 201
    finally:
        publisher.close()
        conn.close()


def test_unconfirmed_messages_are_sent_again_after_a_lost_connection(vhost):
    conn = _declare(vhost, "q")
    publisher = _publisher(vhost)
    try:
        publisher.publish(_message("warm-up"), routing_key="q", wait_confirm=5)
        # Hold back every confirm, publish 5, then break the connection: the 5
        # are unconfirmed as far as the publisher knows.
        real_ack = publisher._on_ack
        publisher._channel.events["basic_ack"].discard(real_ack)
        for index in range(5):
            publisher.publish(_message(f"m{index}"), routing_key="q")
        assert publisher.unconfirmed == 5
        publisher._connection.connection.sock.shutdown(2)
        # The reader notices, reconnects and re-sends them; now they confirm.
        assert wait_for(lambda: publisher.unconfirmed == 0, 20, message="re-sent and confirmed")
        # At least once: every message is on the queue (the originals written
        # before the break may be there too).
        assert {"warm-up", "m0", "m1", "m2", "m3", "m4"} <= set(_drain_ids(conn, "q"))
        # A publish on a broken connection is retried on a fresh one.
        publisher._connection.connection.sock.shutdown(2)
        publisher.publish(_message("after"), routing_key="q", wait_confirm=5)
    finally:
        publisher.close()
        conn.close()


def test_a_refused_message_is_retried_then_reported_by_task_id(vhost, caplog):
    # A full queue that refuses new messages: RabbitMQ nacks them.
    conn = _declare(vhost, "full", **{"x-max-length": 1, "x-overflow": "reject-publish"})
    publisher = _publisher(vhost)
    try:
        publisher.publish(_message("fits"), routing_key="full", wait_confirm=5)
        with caplog.at_level(logging.WARNING, logger="apps.dispatch.publisher"):
            publisher.publish(_message("refused-id"), routing_key="full")
            assert wait_for(lambda: publisher.unconfirmed == 0, 20, message="settled")
        assert any(r.levelno == logging.CRITICAL and "refused-id" in r.getMessage()
                   for r in caplog.records)
        assert sum("sending it again" in r.getMessage() for r in caplog.records) == 4
        assert _depth(conn, "full") == 1
    finally:
        publisher.close()
        conn.close()
