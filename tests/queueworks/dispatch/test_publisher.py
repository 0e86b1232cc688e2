"""The pooled publisher (queueworks/dispatch/publisher.py) on a real broker: messages
are confirmed in the background, re-sent after a lost connection or a nack,
and never dropped silently."""

from __future__ import annotations

import logging
import uuid

import amqp
import pytest

from queueworks.dispatch.publisher import ConfirmingPublisher, PublishRefused
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
        with caplog.at_level(logging.WARNING, logger="queueworks.dispatch.publisher"):
            publisher.publish(_message("refused-id"), routing_key="full")
            assert wait_for(lambda: publisher.unconfirmed == 0, 20, message="settled")
        assert any(r.levelno == logging.CRITICAL and "refused-id" in r.getMessage()
                   for r in caplog.records)
        assert sum("sending it again" in r.getMessage() for r in caplog.records) == 4
        assert _depth(conn, "full") == 1
    finally:
        publisher.close()
        conn.close()


def test_a_publish_that_reconnects_resends_the_unconfirmed_messages_of_the_old_connection(vhost):
    """Delivery tags belong to a channel: after a reconnect the old unconfirmed
    messages are sent again on the new channel, and the new channel's acks
    settle only what was sent on it."""
    conn = _declare(vhost, "q")
    publisher = _publisher(vhost)
    try:
        publisher.publish(_message("warm-up"), routing_key="q", wait_confirm=5)
        # Ignore the old channel's confirms: m0..m4 stay unconfirmed.
        publisher._channel.events["basic_ack"].discard(publisher._on_ack)
        for index in range(5):
            publisher.publish(_message(f"m{index}"), routing_key="q")
        # Break the connection and publish before the reader thread can notice
        # (it needs the lock to act): publish() itself reconnects.
        with publisher._lock:
            publisher._connection.connection.sock.shutdown(2)
            for index in range(5):
                publisher.publish(_message(f"n{index}"), routing_key="q")
        assert wait_for(lambda: publisher.unconfirmed == 0, 20, message="all confirmed")
        ids = _drain_ids(conn, "q")
        for index in range(5):
            # The original (written before the break) and the re-sent copy.
            assert ids.count(f"m{index}") == 2, (index, sorted(ids))
            assert ids.count(f"n{index}") == 1, (index, sorted(ids))
    finally:
        publisher.close()
        conn.close()


def test_a_failure_while_resending_keeps_every_waiting_message_and_the_reader(vhost):
    """The connection breaks again while the unconfirmed messages are re-sent:
    none of them is dropped and the reader thread keeps going."""
    conn = _declare(vhost, "q")
    channels = []

    class BreakSecondConnection:
        """Declared on every new connection: the first reconnect breaks right
        after its channel is ready, before anything is re-sent on it."""

        def __init__(self, channel):
            self.channel = channel

        def declare(self):
            channels.append(self.channel)
            if len(channels) == 2:
                self.channel.connection.sock.shutdown(2)

    publisher = _publisher(vhost)
    publisher.queues = (BreakSecondConnection,)
    try:
        publisher.publish(_message("warm-up"), routing_key="q", wait_confirm=5)
        publisher._channel.events["basic_ack"].discard(publisher._on_ack)
        for index in range(5):
            publisher.publish(_message(f"m{index}"), routing_key="q")
        # The warm-up and the five first copies are in the queue before the cut.
        probe = conn.channel()
        wait_for(lambda: probe.queue_declare("q", passive=True).message_count == 6, 10,
                 message="the first copies queued")
        probe.close()
        publisher._connection.connection.sock.shutdown(2)
        assert wait_for(lambda: publisher.unconfirmed == 0, 30, message="re-sent and confirmed")
        assert publisher._reader.is_alive()
        ids = _drain_ids(conn, "q")
        # The first copies were in the queue before the cut, so each message
        # there twice or more proves the re-send after the broken reconnect.
        assert {f"m{index}" for index in range(5)} <= {i for i in ids if ids.count(i) >= 2}, ids
    finally:
        publisher.close()
        conn.close()


def test_a_channel_error_fails_that_message_and_leaves_the_others_right(vhost, caplog):
    """The broker closes the channel over one message (here an invalid
    expiration; a message over max_message_size is refused the same way):
    that message fails with a clear error, it is not sent again on every
    reconnect, and the other messages arrive once each."""
    conn = _declare(vhost, "q")
    failed = []
    publisher = _publisher(vhost)
    publisher.on_failed = lambda message, error: failed.append(
        (message.properties["application_headers"]["id"], str(error)))
    try:
        publisher.publish(_message("before"), routing_key="q", wait_confirm=5)
        bad = amqp.Message(b"{}", delivery_mode=2, expiration="not-a-number",
                           application_headers={"id": "bad", "task": "t"})
        with caplog.at_level(logging.WARNING, logger="queueworks.dispatch.publisher"):
            bad_tag = publisher.publish(bad, routing_key="q")
            for index in range(5):
                publisher.publish(_message(f"ok{index}"), routing_key="q")
            assert wait_for(lambda: publisher.unconfirmed == 0, 20, message="settled")
        with pytest.raises(PublishRefused, match="expiration"):
            publisher.wait_for(bad_tag, timeout=1)
        assert [task_id for task_id, _ in failed] == ["bad"]
        assert any(r.levelno == logging.CRITICAL and "bad" in r.getMessage()
                   for r in caplog.records)
        # Still working, and nothing re-sent in a loop.
        publisher.publish(_message("after"), routing_key="q", wait_confirm=5)
        ids = _drain_ids(conn, "q")
        assert sorted(ids) == sorted(["before", "after", *(f"ok{i}" for i in range(5))])
    finally:
        publisher.close()
        conn.close()


def test_publishes_from_other_threads_are_confirmed_while_a_refused_message_is_isolated(
        vhost, caplog):
    """Finding the refused message among many unconfirmed ones takes round
    trips per suspect; on a slow link (100 ms round trips here) that is
    seconds.  Meanwhile other threads' publishes are confirmed within 1 s,
    and the guarantees hold: the refused message is reported, every other
    message arrives exactly once."""
    import threading
    import time

    from kombu import Connection

    from tests.support.latency_proxy import LatencyProxy

    host, port = rabbit.AMQP_HOSTPORT.rsplit(":", 1)
    proxy = LatencyProxy((host, int(port)), delay=0.05)
    slow_url = rabbit.broker_url(vhost).replace(rabbit.AMQP_HOSTPORT, f"127.0.0.1:{proxy.port}")

    def connect():
        connection = Connection(slow_url, connect_timeout=5)
        connection.ensure_connection(max_retries=1)
        return connection

    conn = _declare(vhost, "q")
    failed = []
    publisher = ConfirmingPublisher(connect, on_failed=lambda message, error: failed.append(
        message.properties["application_headers"]["id"]))
    try:
        publisher.publish(_message("before"), routing_key="q", wait_confirm=5)
        bad = amqp.Message(b"{}", delivery_mode=2, expiration="not-a-number",
                           application_headers={"id": "bad", "task": "t"})
        with caplog.at_level(logging.WARNING, logger="queueworks.dispatch.publisher"):
            # All sent before the broker's close comes back: 21 suspects.
            publisher.publish(bad, routing_key="q")
            for index in range(20):
                publisher.publish(_message(f"suspect{index}"), routing_key="q")
            wait_for(lambda: any("finding the refused message" in r.getMessage()
                                 for r in caplog.records), 5, interval=0.01,
                     message="isolation under way")
            waits: list[float] = []

            def publish_and_time(index: int) -> None:
                started = time.monotonic()
                publisher.publish(_message(f"other{index}"), routing_key="q", wait_confirm=10)
                waits.append(time.monotonic() - started)

            for index in range(5):
                thread = threading.Thread(target=publish_and_time, args=(index,))
                thread.start()
                thread.join()
            isolating = publisher.unconfirmed
            assert wait_for(lambda: publisher.unconfirmed == 0, 60, message="settled")
        print(f"confirm waits during isolation: {[f'{w:.3f}' for w in waits]} s; "
              f"{isolating} still unconfirmed after them")
        assert max(waits) < 1.0, f"publishes waited {max(waits):.2f} s behind the isolation"
        assert isolating > 0, "the isolation was over before the other publishes: no proof"
        assert failed == ["bad"]
        ids = _drain_ids(conn, "q")
        expected = ["before", *(f"suspect{i}" for i in range(20)), *(f"other{i}" for i in range(5))]
        assert sorted(ids) == sorted(expected)
    finally:
        publisher.close()
        proxy.close()
        conn.close()


def _switchable_publisher(vhost: str, reachable, confirmed: list) -> ConfirmingPublisher:
    """Connects to the real broker only once ``reachable`` is set; before, to
    a port where nothing listens (connection refused)."""
    from kombu import Connection

    from tests.support.live import free_port

    def connect():
        url = (rabbit.broker_url(vhost) if reachable.is_set()
               else f"pyamqp://nobody:unreachable@127.0.0.1:{free_port()}//")
        connection = Connection(url, connect_timeout=1)
        connection.ensure_connection(max_retries=1)
        return connection

    return ConfirmingPublisher(connect, on_confirmed=confirmed.extend)


def test_a_message_kept_while_the_broker_is_unreachable_is_sent_once_it_answers(vhost):
    import threading

    from queueworks.dispatch.publisher import PublishDeferred

    conn = _declare(vhost, "kept")
    reachable, confirmed = threading.Event(), []
    publisher = _switchable_publisher(vhost, reachable, confirmed)
    try:
        with pytest.raises(PublishDeferred, match="kept"):
            publisher.publish(_message("kept-1"), routing_key="kept", keep_for=60)
        assert publisher.unconfirmed == 1
        reachable.set()
        wait_for(lambda: publisher.unconfirmed == 0, 20, message="the kept message confirmed")
        assert _drain_ids(conn, "kept") == ["kept-1"]
        assert [m.properties["application_headers"]["id"] for m in confirmed] == ["kept-1"]
    finally:
        publisher.close(timeout=1)
        conn.close()


def test_a_kept_message_never_sent_is_dropped_after_its_time_and_without_keep_nothing_is_kept(
        vhost, caplog):
    import threading

    from queueworks.dispatch.publisher import PublishDeferred

    publisher = _switchable_publisher(vhost, threading.Event(), [])
    try:
        with pytest.raises(Exception) as plain:
            publisher.publish(_message("not-kept"), routing_key="kept")
        assert not isinstance(plain.value, PublishDeferred)
        assert publisher.unconfirmed == 0
        with caplog.at_level(logging.WARNING, logger="queueworks.dispatch.publisher"):
            with pytest.raises(PublishDeferred):
                publisher.publish(_message("dropped-1"), routing_key="kept", keep_for=1)
            assert publisher.unconfirmed == 1
            wait_for(lambda: publisher.unconfirmed == 0, 15, message="the kept message dropped")
        assert "dropped-1" in caplog.text
    finally:
        publisher.close(timeout=0)


def test_the_reader_is_handed_a_connection_only_once_its_channel_is_open(vhost):
    """Opening reads the broker's answers on the publishing thread: the reader
    thread, which drains the publisher's connection without the lock, must
    not see the connection before that is done, or it can take an answer the
    opening thread then waits for forever (with the lock held, every publish
    behind it blocked)."""
    seen_during_open = []

    class Probe:
        def __init__(self, channel):
            self.channel = channel

        def declare(self):
            seen_during_open.append(publisher._connection)
            self.channel.basic_qos(0, 10, False)  # a round trip, as a declare is

    admin = _declare(vhost, "reader-handover")
    publisher = ConfirmingPublisher(_publisher(vhost)._connect, queues=[Probe])
    try:
        publisher.publish(_message("first"), routing_key="reader-handover", wait_confirm=5)
        with publisher._lock:  # a lost connection, as the reader drops it
            publisher._drop_connection()
        publisher.publish(_message("second"), routing_key="reader-handover", wait_confirm=10)
    finally:
        publisher.close(timeout=5)
        admin.close()
    assert len(seen_during_open) >= 2
    assert seen_during_open[:2] == [None, None]
