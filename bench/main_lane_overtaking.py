"""bench/main_lane.py, priority overtaking: main_worker's workers stopped, a
backlog of priority-1 probes, the workers started, a priority-9 probe sent once
the backlog runs; how many backlog tasks started before it."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

from bench.common import QueueWatcher


def measure_overtaking(system, watcher: QueueWatcher, *, backlog: int,
                       seconds: float, log) -> dict:
    from queueworks.core.models import ProbeRun
    from queueworks.core.tasks import heavy_probe
    from tests.support.live import wait_for

    system.activate()
    system.stop_workers()
    tokens = [f"bk-{uuid.uuid4().hex[:10]}" for _ in range(backlog)]
    for token in tokens:
        # Through the project's app by name: a shared task binds to the current
        # app, which may be the Celery-tutorial system's of an earlier row.
        system.app.send_task(heavy_probe.name, args=[token, seconds], queue=system.queue,
                             priority=1)
    system.start_workers()
    wait_for(lambda: ProbeRun.objects.filter(token__in=tokens).exists(), 120, interval=0.02,
             message="backlog started")
    urgent = f"ur-{uuid.uuid4().hex[:10]}"
    sent = time.time()
    system.app.send_task(heavy_probe.name, args=[urgent, seconds], queue=system.queue, priority=9)
    wait_for(lambda: ProbeRun.objects.filter(token__in=tokens + [urgent],
                                             finished_at__isnull=False).count() == backlog + 1,
             backlog * seconds * 4 + 120, interval=0.3, message="backlog and urgent done")
    started = ProbeRun.objects.get(token=urgent).started_at
    before = ProbeRun.objects.filter(token__in=tokens, started_at__lt=started).count()
    # Of those, the ones that had not started when it was sent: what overtook it.
    overtook = ProbeRun.objects.filter(token__in=tokens, started_at__lt=started,
                                       started_at__gt=datetime.fromtimestamp(sent, timezone.utc)
                                       ).count()
    row = {"variant": system.name, "backlog": backlog, "before": before, "overtook": overtook,
           "wait_s": started.timestamp() - sent}
    log(f"  overtaking {system.name}: priority 9 started after {before}/{backlog} "
        f"(overtaken after it was sent: {overtook}) "
        f"({row['wait_s']:.2f} s)")
    system.stop_workers()
    return row
