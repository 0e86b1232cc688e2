"""Fixtures of the dispatch tests."""

from __future__ import annotations

import os

import pytest

from tests.support import rabbit


@pytest.fixture
def quiet_vhost():
    """The app publishes to a vhost of its own (nobody consumes) for this test.

    The app's pool of the session's vhost is put aside, not closed: kombu
    keeps pools in a registry by URL, and the session uses it again after.
    """
    from apps.dispatch import publisher
    from projectname.celery import app

    previous = (os.environ.get("CELERY_BROKER_URL"), app.conf.broker_url, app._pool)
    vhost = rabbit.create_vhost("quiet")
    os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = rabbit.broker_url(vhost)
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None
    _drop_process_publisher(publisher)
    try:
        yield vhost
    finally:
        _drop_process_publisher(publisher)
        if app._pool is not None:
            app._pool.force_close_all()
        if previous[0] is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = previous[0]
        app.conf.broker_url, app._pool = previous[1], previous[2]
        if "amqp" in app.__dict__:
            app.amqp._producer_pool = None
        rabbit.delete_vhost(vhost)


def _drop_process_publisher(publisher) -> None:
    """The next ``process_publisher()`` connects to the current vhost."""
    current = publisher._process_publisher
    publisher._process_publisher = None
    if current is not None:
        current[1].close(timeout=5)
