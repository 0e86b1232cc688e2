"""heavy_worker autoscales (--autoscale=3,1): it grows under a backlog and shrinks back when idle.

Celery's autoscaler checks every second; it grows as soon as more messages are
reserved than processes run, and shrinks only after AUTOSCALE_KEEPALIVE
seconds (default 30) without a scale-up or a new task.
"""

from __future__ import annotations

import time
import uuid

import pytest

from queueworks.core.models import ProbeRun
from queueworks.core.tasks import heavy_probe
from projectname.topology import TOPOLOGY
from tests.support import rabbit
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
WORKER = TOPOLOGY.worker_named("heavy_worker")


def _pool_size(live_system) -> int | None:
    from projectname.celery import app

    node = live_system.node(WORKER.name)
    replies = app.control.inspect(destination=[node], timeout=2.0).stats() or {}
    stats = replies.get(node)
    return len(stats["pool"]["processes"]) if stats else None


def test_the_program_is_rendered_with_autoscale():
    from queueworks.core.supervisor import render_program_files

    maximum, minimum = WORKER.autoscale
    command = render_program_files(TOPOLOGY)[f"{WORKER.name}.conf"]
    assert f"--autoscale={maximum},{minimum}" in command and "--concurrency" not in command


def test_heavy_worker_grows_under_a_backlog_and_shrinks_back(live_system):
    _grows_and_shrinks_back(live_system)


def test_heavy_worker_still_grows_after_its_broker_connection_was_closed(live_system):
    """Celery sets the prefetch count after a reconnect from the pool's
    current size: at the minimum of one process that left prefetch 1, so
    never more messages reserved than processes, and the autoscaler never
    grew again (the worker ran its backlog one at a time)."""
    maximum, minimum = WORKER.autoscale
    wait_for(lambda: _pool_size(live_system) == minimum, 120, interval=2,
             message=f"{WORKER.name} at {minimum} process(es)")
    for name in rabbit.vhost_connections(live_system.vhost):
        rabbit.close_connection(name, reason="a test: heavy_worker reconnects at its minimum")
    # Reconnected: the worker answers again.
    time.sleep(3)
    wait_for(lambda: _pool_size(live_system) == minimum, 60, interval=1,
             message=f"{WORKER.name} reconnected")
    _grows_and_shrinks_back(live_system)


def _grows_and_shrinks_back(live_system):
    maximum, minimum = WORKER.autoscale
    # Earlier tests may have grown it: start from the minimum.
    wait_for(lambda: _pool_size(live_system) == minimum, 120, interval=2,
             message=f"{WORKER.name} at {minimum} process(es)")

    # A backlog that outlasts the growth on a slow machine: the pool is
    # watched while tasks still wait, and a missed reply (None) asks again.
    tokens = [uuid.uuid4().hex for _ in range(2 * maximum)]
    sent = time.monotonic()
    results = [heavy_probe.delay(token, 4) for token in tokens]
    wait_for(lambda: (_pool_size(live_system) or 0) >= maximum, 90, interval=0.5,
             message=f"{WORKER.name} grown to {maximum}")
    grown = time.monotonic() - sent
    for result in results:
        assert result.get(timeout=120)["hostname"] == live_system.node(WORKER.name)

    runs = list(ProbeRun.objects.filter(token__in=tokens).order_by("started_at"))
    # Really in parallel: some task started before another one finished.
    overlapping = max(sum(1 for other in runs if other.started_at <= run.started_at < other.finished_at)
                      for run in runs)
    assert overlapping >= 2, [(r.started_at, r.finished_at) for r in runs]

    idle = time.monotonic()
    wait_for(lambda: _pool_size(live_system) == minimum, 120, interval=1,
             message=f"{WORKER.name} shrunk back to {minimum}")
    print(f"\n{WORKER.name}: {minimum}->{maximum} processes {grown:.1f} s after the backlog "
          f"arrived; back to {minimum} {time.monotonic() - idle:.1f} s after it was done")
