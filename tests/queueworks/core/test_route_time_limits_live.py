"""A route's time limits through the real workers of every lane.

Each ``hard_limited_*`` task is routed with a 2 s hard limit and no soft
limit, far below its worker's own soft limit (main_worker 60 s, the bulk
lane 30 s, heavy_worker 1500 s).  Sleeping 6 s it must be stopped by the
route's limits: at a soft limit below 2 s (a clean failure), or, ignoring
that, at the hard limit.  ``soft_limited_main`` has a 1 s soft limit alone.
Published through ``apply_async`` and through the fast/bulk enqueue.
"""

from __future__ import annotations

import re

import pytest

from queueworks.dispatch.services import task_enqueue, tasks_enqueue_bulk
from tests.support.live import wait_for

TESTING = "apps.testing.tasks"
SLEEP = 6.0


def _finished(task_id: str):
    from django_celery_results.models import TaskResult

    return TaskResult.objects.filter(task_id=task_id, status__in=("SUCCESS", "FAILURE")).first()


def _soft_stop_seconds(result: str) -> float:
    found = re.search(r"after ([0-9.]+)s", result)
    assert found, result
    return float(found.group(1))


def _publish_all():
    """(name, task id, expected outcome) for every lane and publish path."""
    from apps.testing import tasks

    ignoring = {"seconds": SLEEP, "ignore_soft_limit": True}
    cleaning = {"seconds": SLEEP}
    return [
        ("main, hard, apply_async", tasks.hard_limited_main.apply_async(kwargs=ignoring).id,
         "hard"),
        ("main, soft below the hard, task_enqueue",
         task_enqueue(task=f"{TESTING}.hard_limited_main", kwargs=cleaning), "soft<2"),
        ("main, soft alone, apply_async", tasks.soft_limited_main.apply_async(kwargs=cleaning).id,
         "soft<2"),
        ("bulk, hard, task_enqueue",
         task_enqueue(task=f"{TESTING}.hard_limited_bulk", kwargs=ignoring), "hard"),
        ("bulk, soft below the hard, bulk enqueue",
         tasks_enqueue_bulk(task=f"{TESTING}.hard_limited_bulk",
                            kwargs_list=[cleaning]).task_ids[0], "soft<2"),
        ("heavy, hard, apply_async", tasks.hard_limited_heavy.apply_async(kwargs=ignoring).id,
         "hard"),
        ("heavy, soft below the hard, task_enqueue",
         task_enqueue(task=f"{TESTING}.hard_limited_heavy", kwargs=cleaning), "soft<2"),
    ]


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_route_time_limits_stop_tasks_on_every_lane(live_system):
    calls = _publish_all()
    outcomes = {}
    for name, task_id, expected in calls:
        row = wait_for(lambda: _finished(task_id), 60, interval=0.2, message=f"{name} finished")
        outcomes[name] = (expected, row.status, row.result)
    problems = []
    for name, (expected, status, result) in outcomes.items():
        if status != "FAILURE":
            problems.append(f"{name}: {status} {result} (not stopped by the route's limit)")
        elif expected == "hard" and "TimeLimitExceeded" not in result:
            problems.append(f"{name}: expected TimeLimitExceeded, got {result}")
        elif expected == "soft<2" and ("SoftTimeLimitReached" not in result
                                       or _soft_stop_seconds(result) >= 2.0):
            problems.append(f"{name}: expected a soft stop before 2 s, got {result}")
    assert not problems, "\n".join(problems)
