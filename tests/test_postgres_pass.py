"""The PostgreSQL pass (``QUEUEWORKS_TEST_DATABASE=postgres pytest -m postgres``)
runs on PostgreSQL end to end: the test process's database and every program
of the live system; the default pass stays on SQLite, as `make run` does."""

from __future__ import annotations

import uuid

import pytest

from tests.support import postgres

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

VENDORS = {"sqlite": ("sqlite", "sqlite:///"), "postgres": ("postgresql", "postgres://")}


def test_the_suite_and_the_live_system_use_the_pass_database(live_system):
    from django.db import connection

    from queueworks.core.models import ProbeRun
    from queueworks.core.tasks import probe

    vendor, scheme = VENDORS[postgres.TEST_DATABASE]
    assert connection.vendor == vendor
    assert live_system.env["DATABASE_URL"].startswith(scheme)
    assert live_system.env["DATABASE_URL"].endswith("/" + connection.settings_dict["NAME"])
    # A worker's write is visible here: both sides use that one database.
    token = uuid.uuid4().hex
    assert probe.delay(token).get(timeout=60)["token"] == token
    assert ProbeRun.objects.filter(token=token).count() == 1
