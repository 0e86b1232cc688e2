"""A route's time limits through the real workers of every lane.

Each ``hard_limited_*`` task is routed with a 3 s hard limit and no soft
limit, far below its worker's own soft limit (main_worker 60 s, the bulk
lane 30 s, heavy_worker 1500 s).  Sleeping 6 s it must be stopped by the
route's limits: at the soft limit derived below the hard one (a clean
failure), or, ignoring that, at the hard limit.  ``soft_limited_main`` has
a 1 s soft limit alone.  Published through ``apply_async``, the fast enqueue
and the bulk enqueue.
"""

from __future__ import annotations

import re

import pytest

from projectname.topology import TOPOLOGY
from queueworks.dispatch.services import task_enqueue, tasks_enqueue_bulk
from tests.support.live import wait_for

TESTING = "apps.testing.tasks"
SLEEP = 6.0


def _finished(task_id: str):
    from django_celery_results.models import TaskResult

    return TaskResult.objects.filter(task_id=task_id, status__in=("SUCCESS", "FAILURE")).first()


def _soft_stop_seconds(result: str) -> float | None:
    found = re.search(r"after ([0-9.]+)s", result)
    return float(found.group(1)) if found else None


def _publish_all():
    """(name, task, task id, what must stop it) for every lane and publish path."""
    from apps.testing import tasks

    ignoring = {"seconds": SLEEP, "ignore_soft_limit": True}
    cleaning = {"seconds": SLEEP}
    main, bulk, heavy = (f"{TESTING}.hard_limited_{lane}" for lane in ("main", "bulk", "heavy"))
    soft_main = f"{TESTING}.soft_limited_main"
    return [
        ("main, apply_async", main, tasks.hard_limited_main.apply_async(kwargs=ignoring).id,
         "hard"),
        ("main, task_enqueue", main, task_enqueue(task=main, kwargs=cleaning), "soft"),
        ("main soft alone, apply_async", soft_main,
         tasks.soft_limited_main.apply_async(kwargs=cleaning).id, "soft"),
        ("bulk, task_enqueue", bulk, task_enqueue(task=bulk, kwargs=ignoring), "hard"),
        ("bulk, bulk enqueue", bulk,
         tasks_enqueue_bulk(task=bulk, kwargs_list=[cleaning]).task_ids[0], "soft"),
        ("heavy, apply_async", heavy, tasks.hard_limited_heavy.apply_async(kwargs=ignoring).id,
         "hard"),
        ("heavy, task_enqueue", heavy, task_enqueue(task=heavy, kwargs=cleaning), "soft"),
    ]


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_route_time_limits_stop_tasks_on_every_lane(live_system):
    annotations = TOPOLOGY.celery_annotations()
    problems = []
    for name, task, task_id, stop in _publish_all():
        row = wait_for(lambda: _finished(task_id), 60, interval=0.2, message=f"{name} finished")
        soft = annotations[task].get("soft_time_limit")
        hard = annotations[task].get("time_limit") or SLEEP * 10
        if row.status != "FAILURE":
            problems.append(f"{name}: {row.status} {row.result}: not stopped by its limits")
        elif stop == "hard" and "TimeLimitExceeded" not in row.result:
            problems.append(f"{name}: not stopped at its hard limit: {row.result}")
        elif stop == "soft":
            stopped = _soft_stop_seconds(row.result)
            if stopped is None or stopped >= hard or (soft and stopped < soft - 0.2):
                problems.append(f"{name}: not stopped at its {soft} s soft limit "
                                f"(hard {hard} s): {row.result}")
    assert not problems, "\n".join(problems)
