"""The balancer moving the processes of a program of single-process workers,
under supervisor, through the real broker and real workers.

A supervisord of its own runs a balanced program of SoloPool workers
(``processes=1``, up to 2: "balance_solo_2" does not start with supervisord),
a balanced prefork program (2 processes, 1-2), budget 3, and the
``balancer`` program rendered from
tests/queueworks/balancer/processes_topology.py.  A backlog on the solo lane
makes the balancer move a process from the idle prefork pool to it (a start);
a backlog on the prefork lane
then takes it back (a warm stop of an idle process).  Every task runs exactly
once, and a warm stop of a busy process under a backlog loses and repeats
nothing either (acks late: its prefetched messages go back to the queue).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from queueworks.core.supervisor import balancer_program, render_program, render_program_files
from queueworks.core.supervisord_client import Supervisord
from tests.queueworks.balancer import processes_topology as declared
from tests.support.live import wait_for
from tests.support.programs import programs_system

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def processes_system(django_db_setup, django_db_blocker, broker_vhost, tmp_path_factory):
    from django.db import connection

    from tests.conftest import _database_url
    from tests.support import rabbit

    programs = (declared.SOLO, declared.PREFORK)
    files = {name: text for name, text in render_program_files(declared.PROCESSES_TOPOLOGY).items()
             if name.removesuffix(".conf") in programs}
    files["balancer.conf"] = render_program(balancer_program(topology_path=declared.TOPOLOGY_PATH))
    files = {name: text.replace('DJANGO_SETTINGS_MODULE="projectname.settings"',
                                f'DJANGO_SETTINGS_MODULE="{declared.SETTINGS}"')
             for name, text in files.items()}
    system = programs_system(
        run_dir=tmp_path_factory.mktemp("processes"), vhost=broker_vhost,
        broker_url=rabbit.broker_url(broker_vhost),
        database_url=_database_url(connection.settings_dict),
        files=files, workers=[f"{declared.SOLO}_1", declared.PREFORK])
    try:
        system.start()
        yield system
    finally:
        system.stop()


def live(supervisord: Supervisord) -> int:
    return sum(info["statename"] in ("STARTING", "RUNNING")
               for info in supervisord.processes_of(declared.SOLO))


def publish(queue_name: str, tasks: int, log, ms: int = 300) -> None:
    from apps.testing.tasks import timed_sleep

    queue = next(q for q in declared.PROCESSES_TOPOLOGY.queues if q.name == queue_name)
    for _ in range(tasks):
        timed_sleep.apply_async(kwargs={"ms": ms, "sent_at": time.time(), "log": str(log)},
                                queue=queue.to_kombu())


def runs(log) -> Counter:
    return Counter(line.split()[0] for line in log.read_text().splitlines()) \
        if log.exists() else Counter()


def test_the_balancer_starts_and_stops_processes_and_no_task_is_lost_or_run_twice(
        processes_system, tmp_path):
    from queueworks.balancer.models import BalanceDecision

    supervisord = Supervisord(processes_system.run_dir / "supervisor.sock", timeout=10)
    assert live(supervisord) == 1
    log = tmp_path / "runs.log"

    # 40 x 0.3 s on the solo lane: 12 s of work for one process.
    publish(declared.SOLO_QUEUE, 40, log)
    wait_for(lambda: live(supervisord) == declared.MAXIMUM, 60, interval=0.3,
             message="balance_solo_2 started by the balancer")
    processes_system.wait_workers_ready([f"{declared.SOLO}_2"], timeout=60)
    wait_for(lambda: sum(runs(log).values()) == 40, 90, message="the 40 solo tasks run")

    # A backlog on the prefork lane, with the budget full: the solo program
    # gives an (idle) process back.
    publish(declared.PREFORK_QUEUE, 30, log)
    wait_for(lambda: live(supervisord) == declared.MINIMUM, 60, interval=0.3,
             message="a solo process stopped by the balancer")
    wait_for(lambda: sum(runs(log).values()) == 70, 90, message="all 70 tasks run")

    decisions = list(BalanceDecision.objects.filter(program=declared.SOLO).order_by("created_at"))
    moves = [(d.processes_before, d.processes_after) for d in decisions if not d.error]
    assert moves[:2] == [(1, 2), (2, 1)], moves

    # A warm stop of a busy process with messages prefetched: its task
    # finishes, its prefetched messages go back, nothing runs twice.
    supervisord.start(f"{declared.SOLO}:{declared.SOLO}_2", wait=True)
    processes_system.wait_workers_ready([f"{declared.SOLO}_2"], timeout=60)
    publish(declared.SOLO_QUEUE, 30, log, ms=200)
    wait_for(lambda: sum(runs(log).values()) >= 75, 30, message="the solo backlog running")
    supervisord.stop(f"{declared.SOLO}:{declared.SOLO}_2", wait=True)
    wait_for(lambda: sum(runs(log).values()) == 100, 90, message="all 100 tasks run")
    time.sleep(2)
    counted = runs(log)
    assert len(counted) == 100 and set(counted.values()) == {1}, counted.most_common(3)
