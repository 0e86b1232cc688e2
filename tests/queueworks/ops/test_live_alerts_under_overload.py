"""Alerts arrive while the system is overloaded: a deep backlog on the bulk
lane and a dead main_worker must not delay them (a real broker, the live
system's own programs, the e-mails they send)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests

from queueworks.core.broker_state import queue_states
from tests.support import rabbit
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BACKLOG = 200_000
BULK_WORKERS = ("bulk_worker_1", "bulk_worker_2")
# What the issue promises, from the moment the overload is in place.
ALERT_WITHIN_SECONDS = 120


def _new_mail(run_dir: Path, seen: set[Path]) -> str:
    return "\n".join(path.read_text(errors="replace")
                     for path in sorted((run_dir / "mail").glob("*")) if path not in seen)


def _purge(vhost: str, queue: str) -> None:
    requests.delete(f"{rabbit.MANAGEMENT_URL}/api/queues/{vhost}/{queue}/contents",
                    auth=rabbit.AUTH, timeout=30).raise_for_status()


@pytest.mark.timeout(900)
def test_wait_and_no_consumer_alerts_arrive_within_two_minutes_under_a_bulk_backlog(live_system):
    from queueworks.core.tasks import probe
    from queueworks.dispatch.services import tasks_enqueue_bulk

    mail_dir = live_system.run_dir / "mail"
    seen = set(mail_dir.glob("*")) if mail_dir.exists() else set()
    stopped = [*BULK_WORKERS, "main_worker"]
    try:
        # The bulk workers stay stopped, so the backlog stays put: 200,000
        # tasks ahead of anything else on that lane.
        for name in BULK_WORKERS:
            assert live_system.ctl("stop", name).returncode == 0
        started = time.monotonic()
        for offset in range(0, BACKLOG, 10_000):
            tasks_enqueue_bulk(task="apps.testing.tasks.noop",
                               kwargs_list=[{"n": n} for n in range(offset, offset + 10_000)])
        published = time.monotonic() - started
        print(f"published {BACKLOG} in {published:.1f} s")
        assert live_system.ctl("stop", "main_worker").returncode == 0
        probe.delay(uuid.uuid4().hex)  # work waiting on main_worker, nobody to take it
        overloaded_at = time.monotonic()

        def overloaded():
            # The management API's numbers lag by a few seconds.
            states = queue_states(["bulk", "main_worker"])
            return states["bulk"].ready >= BACKLOG and states["main_worker"].consumers == 0

        wait_for(overloaded, 30, interval=1, message="the backlog and no main_worker consumer")

        def alerted():
            mail = _new_mail(live_system.run_dir, seen)
            return ("queue bulk: the oldest message has waited" in mail
                    and "queue main_worker: " in mail and "no consumer" in mail)

        try:
            wait_for(alerted, ALERT_WITHIN_SECONDS, interval=2,
                     message="the bulk wait alert and the main_worker no-consumer alert")
        finally:
            print(f"alerts after "
                  f"{time.monotonic() - overloaded_at:.1f} s; mail:\n"
                  f"{_new_mail(live_system.run_dir, seen)[:2000]}")
    finally:
        _purge(live_system.vhost, "bulk")
        for name in stopped:
            live_system.ctl("start", name)
        live_system.wait_workers_ready(stopped)
