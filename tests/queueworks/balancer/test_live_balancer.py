"""The balancer under supervisor, through the real broker and real prefork workers.

A supervisord of its own runs two balanced worker programs (2 + 2 processes,
budget 4, each 1-3, one process per decision, 3 s cooldown) and the
``balancer`` program rendered from tests/queueworks/balancer/topology.py.  A
backlog on lane A takes processes from lane B; once it drains the processes
stay where they are (no move without waiting work), until a backlog on lane B
takes them back.  A sampler watches every pool the whole time: never beyond
the limits.
"""

from __future__ import annotations

import threading
import time

import pytest

from queueworks.balancer.models import BalanceDecision
from queueworks.balancer.pools import pool_sizes
from queueworks.core.supervisor import balancer_program, render_program, render_program_files
from tests.queueworks.balancer import topology as declared
from tests.support.live import wait_for
from tests.support.programs import programs_system

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def balanced_system(django_db_setup, django_db_blocker, broker_vhost, tmp_path_factory):
    from django.db import connection

    from tests.conftest import _database_url
    from tests.support import rabbit

    files = {name: text for name, text in render_program_files(declared.BALANCED_TOPOLOGY).items()
             if name.removesuffix(".conf") in declared.BALANCED}
    files["balancer.conf"] = render_program(balancer_program(topology_path=declared.TOPOLOGY_PATH))
    # Every program runs with the test queues declared (tests/queueworks/balancer/settings.py).
    files = {name: text.replace('DJANGO_SETTINGS_MODULE="projectname.settings"',
                                f'DJANGO_SETTINGS_MODULE="{declared.SETTINGS}"')
             for name, text in files.items()}
    system = programs_system(
        run_dir=tmp_path_factory.mktemp("balanced"), vhost=broker_vhost,
        broker_url=rabbit.broker_url(broker_vhost),
        database_url=_database_url(connection.settings_dict),
        files=files, workers=list(declared.BALANCED))
    try:
        system.start()
        yield system
    finally:
        system.stop()


class Sampler(threading.Thread):
    """Pool sizes of the balanced programs, every half second, until stopped."""

    def __init__(self, system):
        super().__init__(daemon=True)
        from projectname.celery import app

        self.app, self.nodes = app, {name: system.node(name) for name in declared.BALANCED}
        self.samples: list[dict[str, int]] = []
        self.stopping = threading.Event()

    def latest(self) -> dict[str, int]:
        return self.samples[-1] if self.samples else {}

    def run(self):
        while not self.stopping.is_set():
            sizes = pool_sizes(self.app, list(self.nodes.values()), timeout=2.0)
            if len(sizes) == len(self.nodes):
                self.samples.append({name: sizes[node] for name, node in self.nodes.items()})
            self.stopping.wait(0.5)


def test_processes_follow_the_backlog_and_come_back_within_the_limits(balanced_system, tmp_path):
    from apps.testing.tasks import timed_sleep

    sampler = Sampler(balanced_system)
    sampler.start()
    try:
        wait_for(lambda: sampler.latest(), 60, message="first pool sample")
        log = tmp_path / "runs.log"

        def burst(queue_name: str, tasks: int) -> None:
            queue = next(q for q in declared.BALANCED_TOPOLOGY.queues if q.name == queue_name)
            for _ in range(tasks):
                timed_sleep.apply_async(
                    kwargs={"ms": 400, "sent_at": time.time(), "log": str(log)},
                    queue=queue.to_kombu())

        # 100 x 0.4 s on lane A: 40 s of work for one process, 13 s for three.
        burst(declared.QUEUE_A, 100)
        wait_for(lambda: sampler.latest().get("balance_a") == declared.MAXIMUM, 90, interval=0.5,
                 message=f"balance_a grown to {declared.MAXIMUM}")
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 100, 120,
                 message="all 100 tasks run")
        drained = sampler.latest()
        assert drained == {"balance_a": declared.MAXIMUM, "balance_b": declared.MINIMUM}, drained
        held_from = len(sampler.samples)
        time.sleep(2 * declared.COOLDOWN + 2)
        assert all(sample == drained for sample in sampler.samples[held_from:]), (
            "pools moved with nothing waiting", sampler.samples[held_from:])

        # 60 x 0.4 s on lane B: 24 s of work for one process.
        burst(declared.QUEUE_B, 60)
        wait_for(lambda: sampler.latest().get("balance_b") == declared.MAXIMUM, 90, interval=0.5,
                 message=f"balance_b grown back to {declared.MAXIMUM}")
        wait_for(lambda: len(log.read_text().splitlines()) == 160, 120,
                 message="all 160 tasks run")
    finally:
        sampler.stopping.set()
        sampler.join()

    for sample in sampler.samples:
        assert all(declared.MINIMUM <= count <= declared.MAXIMUM for count in sample.values()), sample
        assert sum(sample.values()) <= declared.BUDGET, sample
    assert max(sample["balance_a"] for sample in sampler.samples) == declared.MAXIMUM
    # Lane B gave its processes to lane A down to its minimum, not below, and
    # lane A gave them back for lane B's backlog.
    assert min(sample["balance_b"] for sample in sampler.samples) == declared.MINIMUM
    assert sampler.latest()["balance_a"] < declared.MAXIMUM

    decisions = list(BalanceDecision.objects.order_by("created_at", "id"))
    assert decisions, "no decision recorded"
    grown = [d for d in decisions if d.program == "balance_a" and d.processes_after > d.processes_before]
    assert grown and "balance_a:" in grown[0].reason and "expected wait" in grown[0].reason
    assert grown[0].queues == declared.QUEUE_A
    for decision in decisions:
        if decision.outcome == BalanceDecision.APPLIED:
            assert abs(decision.processes_after - decision.processes_before) <= declared.MAX_SHIFT
            assert declared.MINIMUM <= decision.processes_after <= declared.MAXIMUM
    # Decisions (rows of one decision share its time) are a cooldown apart.
    times = sorted({d.created_at.timestamp() for d in decisions})
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert all(gap >= declared.COOLDOWN - 0.2 for gap in gaps), gaps
