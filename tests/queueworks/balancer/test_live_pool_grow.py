"""A grow through the balancer reaches the pool at once, not at the pool's next timer.

One balanced test program under a supervisord of its own, no balancer
program (nothing else moves the pool): each round grows it by one through
``pool_change`` and times how long until ``inspect stats`` lists the new
process, then gives the process back.  Celery's prefork pool forks the
processes a stock ``pool_grow`` asks for at its next maintenance, on a
5-second timer: one round in three at best would see it within the limit.
"""

from __future__ import annotations

import time

import pytest

from queueworks.balancer.pools import pool_change, pool_sizes
from queueworks.core.supervisor import render_program_files
from tests.queueworks.balancer import topology as declared
from tests.support.programs import programs_system

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PROGRAM = "balance_a"
ROUNDS = 3
# Seconds from the grow command to the new process in ``inspect stats``: a
# command round trip and a fork, far below the pool's 5 s maintenance timer.
GROW_VISIBLE_WITHIN = 1.5


@pytest.fixture(scope="module")
def one_worker(django_db_setup, django_db_blocker, broker_vhost, tmp_path_factory):
    from django.db import connection

    from tests.conftest import _database_url
    from tests.support import rabbit

    files = {name: text.replace('DJANGO_SETTINGS_MODULE="projectname.settings"',
                                f'DJANGO_SETTINGS_MODULE="{declared.SETTINGS}"')
             for name, text in render_program_files(declared.BALANCED_TOPOLOGY).items()
             if name.removesuffix(".conf") == PROGRAM}
    system = programs_system(
        run_dir=tmp_path_factory.mktemp("pool_grow"), vhost=broker_vhost,
        broker_url=rabbit.broker_url(broker_vhost),
        database_url=_database_url(connection.settings_dict), files=files, workers=[PROGRAM])
    try:
        system.start()
        yield system
    finally:
        system.stop()


def seconds_until_size(app, node: str, size: int, *, since: float, limit: float) -> float | None:
    """Seconds from ``since`` until the node's pool shows ``size`` processes (None: not within limit)."""
    while time.monotonic() - since < limit:
        if pool_sizes(app, [node], timeout=1.0).get(node) == size:
            return time.monotonic() - since
        time.sleep(0.05)
    return None


def test_a_grow_shows_the_new_process_within_a_second_and_a_half(one_worker):
    from projectname.celery import app

    node = one_worker.node(PROGRAM)
    before = pool_sizes(app, [node])[node]
    delays = []
    for _ in range(ROUNDS):
        started = time.monotonic()
        assert pool_change(app, node, by=1) == 1
        delay = seconds_until_size(app, node, before + 1, since=started, limit=10.0)
        assert delay is not None, f"{node} never showed {before + 1} processes"
        delays.append(delay)
        assert pool_change(app, node, by=-1) == 1
    assert all(delay <= GROW_VISIBLE_WITHIN for delay in delays), (
        f"seconds from grow to the new process in inspect stats, per round: "
        f"{[round(delay, 2) for delay in delays]}")
