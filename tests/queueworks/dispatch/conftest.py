"""Fixtures of the dispatch tests."""

from __future__ import annotations

import pytest

from tests.support import rabbit


@pytest.fixture
def quiet_vhost():
    """The app publishes to a vhost of its own (nobody consumes) for this test."""
    from queueworks.dispatch import process_publisher as publisher
    from projectname.celery import app

    vhost = rabbit.create_vhost("quiet")
    try:
        with rabbit.app_publishing_to(app, rabbit.broker_url(vhost)):
            _drop_process_publisher(publisher)
            try:
                yield vhost
            finally:
                _drop_process_publisher(publisher)
    finally:
        rabbit.delete_vhost(vhost)


def _drop_process_publisher(publisher) -> None:
    """The next ``process_publisher()`` connects to the current vhost."""
    current = publisher._process_publisher
    publisher._process_publisher = None
    if current is not None:
        current[1].close(timeout=5)
