"""Fixtures for the metrics tests."""

import pytest


@pytest.fixture
def quiet_sources(monkeypatch):
    """Outside live tests /metrics reads no broker, no workers, no supervisord:
    those sources report themselves down, the database is read for real."""
    from queueworks.core import broker_state
    from queueworks.ops import programs
    from queueworks.taskapi import worker_snapshot

    def unreachable(*args, **kwargs):
        raise broker_state.BrokerStateError("not read in this test")

    monkeypatch.setattr(broker_state, "queue_states", unreachable)
    monkeypatch.setattr(worker_snapshot, "workers_snapshot", lambda **kwargs: None)
    monkeypatch.setattr(programs, "program_states", unreachable)


@pytest.fixture
def scraper_credentials(settings):
    settings.QUEUEWORKS_METRICS_USERNAME = "prometheus"
    settings.QUEUEWORKS_METRICS_PASSWORD = "scrape-secret-7q!"
    return settings.QUEUEWORKS_METRICS_USERNAME, settings.QUEUEWORKS_METRICS_PASSWORD
