"""The worker's event dispatcher publishes without confirms; everything else keeps them."""

from __future__ import annotations

import pytest

from queueworks.dispatch.worker import EventsWithoutConfirms
from queueworks.reliability.consumer import ReliableConsumer
from tests.support import rabbit


class _Consumer(EventsWithoutConfirms):
    def __init__(self, app):
        self.app = app

    def ensure_connected(self, connection):
        connection.ensure_connection(max_retries=1)
        return connection


def test_the_worker_consumer_opens_its_events_connection_through_the_mixin():
    assert ReliableConsumer.connection_for_write is EventsWithoutConfirms.connection_for_write


@pytest.mark.live
def test_the_events_connection_publishes_without_confirms_the_apps_with():
    from projectname.celery import app

    vhost = rabbit.create_vhost("events")
    try:
        url = rabbit.broker_url(vhost)
        assert app.conf.broker_transport_options.get("confirm_publish") is True
        with _Consumer(app).connection_for_write(url=url) as events:
            channel = events.default_channel
            # py-amqp puts basic_publish_confirm on a confirm_publish channel.
            assert channel.basic_publish == channel._basic_publish
        with app.connection_for_write(url=url) as tasks:
            channel = tasks.default_channel
            assert channel.basic_publish == channel.basic_publish_confirm
    finally:
        rabbit.delete_vhost(vhost)
