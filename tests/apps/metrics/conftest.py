"""Fixtures for the metrics tests."""

import pytest


@pytest.fixture
def quiet_sources(monkeypatch):
    """Outside live tests /metrics reads no broker, no workers, no supervisord:
    those sources report themselves down, the database is read for real."""
    from apps.core import broker_state
    from apps.ops import programs
    from apps.taskapi import worker_snapshot

    def unreachable(*args, **kwargs):
        raise broker_state.BrokerStateError("not read in this test")

    monkeypatch.setattr(broker_state, "queue_states", unreachable)
    monkeypatch.setattr(worker_snapshot, "workers_snapshot", lambda **kwargs: None)
    monkeypatch.setattr(programs, "program_states", unreachable)


@pytest.fixture
def scraper_credentials(settings):
    settings.METRICS_USERNAME = "prometheus"
    settings.METRICS_PASSWORD = "scrape-secret-7q!"
    return settings.METRICS_USERNAME, settings.METRICS_PASSWORD
