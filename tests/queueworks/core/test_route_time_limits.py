"""A route's time limits made coherent with its workers' (queueworks/core/time_limits.py).

Through the real workers: test_route_time_limits_live.py."""

from __future__ import annotations

import pytest

from queueworks.core.checks import check_topology
from queueworks.core.time_limits import call_time_limits, soft_limit_below, time_limit_problems
from queueworks.core.topology import Queue, Route, Topology, Worker

MAIN = Worker("main", ("q",), soft_time_limit=60, time_limit=90)
BULK = Worker("bulk", ("b",), soft_time_limit=30, time_limit=60)


def topology(*routes, workers=(MAIN, BULK)) -> Topology:
    return Topology(queues=(Queue("q", "q"), Queue("b", "b"), Queue("celery", "default")),
                    workers=(*workers, Worker("default", ("celery",))), routes=routes,
                    schedules=(), default_queue="celery")


def test_a_hard_limit_at_or_below_the_workers_soft_limit_gets_a_soft_limit_below_it():
    declared = topology(Route("a.job", "q", time_limit=10), Route("b.job", "b", time_limit=30))
    # main_worker's proportion (60/90), the bulk lane's (30/60).
    assert call_time_limits(declared, "a.job") == (6.7, 10)
    assert call_time_limits(declared, "b.job") == (15.0, 30)
    assert declared.celery_annotations()["a.job"] | {} == {
        "acks_late": True, "reject_on_worker_lost": True, "soft_time_limit": 6.7,
        "time_limit": 10}


def test_a_hard_limit_past_the_workers_soft_limit_keeps_the_workers_soft_limit():
    declared = topology(Route("a.job", "q", time_limit=120))
    assert call_time_limits(declared, "a.job") == (None, 120)
    assert "soft_time_limit" not in declared.celery_annotations()["a.job"]


def test_declared_pairs_and_soft_limits_alone_stay_as_declared():
    declared = topology(Route("a.job", "q", soft_time_limit=2, time_limit=5),
                        Route("b.job", "q", soft_time_limit=1), Route("c.job", "q"))
    assert call_time_limits(declared, "a.job") == (2, 5)
    assert call_time_limits(declared, "b.job") == (1, None)
    assert call_time_limits(declared, "c.job") == (None, None)
    assert "time_limit" not in declared.celery_annotations()["c.job"]


def test_the_smallest_proportion_of_the_consuming_workers_applies():
    strict = Worker("strict", ("q",), soft_time_limit=10, time_limit=40)
    assert soft_limit_below(20, [MAIN, strict]) == 5.0
    assert soft_limit_below(20, [strict]) is None  # its own soft limit fires first
    assert soft_limit_below(1, [MAIN]) == 0.7
    # A worker without a margin (soft = hard) gives none: both fire together.
    equal = Worker("equal", ("q",), soft_time_limit=60, time_limit=60)
    assert soft_limit_below(10, [equal]) == 10


def test_a_calls_own_limits_are_made_coherent_or_refused():
    declared = topology(Route("a.job", "q", soft_time_limit=20, time_limit=40))
    # The caller's hard limit under the route's soft limit: a soft limit below it.
    assert call_time_limits(declared, "a.job", time_limit=10) == (6.7, 10)
    assert call_time_limits(declared, "a.job", soft_time_limit=30) == (30, 40)
    assert call_time_limits(declared, "a.job", soft_time_limit=50) == (26.7, 40)
    # An unrouted task runs on the default queue's worker (60/90 by default).
    assert call_time_limits(declared, "z.job", time_limit=5) == (3.3, 5)
    with pytest.raises(ValueError, match="must be below time_limit"):
        call_time_limits(declared, "a.job", soft_time_limit=10, time_limit=10)
    with pytest.raises(ValueError, match=r"hard time limit of the workers that run it \(90 s\)"):
        call_time_limits(declared, "z.job", soft_time_limit=90)


def test_a_route_refuses_a_soft_limit_not_below_its_hard_limit():
    with pytest.raises(ValueError, match="soft_time_limit must be below time_limit"):
        Route("a.job", "q", soft_time_limit=10, time_limit=10)
    with pytest.raises(ValueError, match="time_limit must be positive"):
        Route("a.job", "q", time_limit=-1)


def test_the_checks_refuse_soft_limits_that_cannot_fire_first():
    declared = topology(Route("a.job", "q", soft_time_limit=90), Route("b.job", "b",
                                                                       soft_time_limit=59),
                        workers=(MAIN, BULK, Worker("late", ("b",), soft_time_limit=70,
                                                    time_limit=50)))
    problems = time_limit_problems(declared)
    assert len(problems) == 3, problems
    assert any("Worker 'late'" in problem for problem in problems)
    assert any("Route 'a.job'" in problem and "'main' (90 s)" in problem for problem in problems)
    assert any("Route 'b.job'" in problem and "'late' (50 s)" in problem for problem in problems)
    errors = check_topology(declared, known_tasks={"a.job", "b.job"})
    assert [error.id for error in errors] == ["topology.E014"] * 3
    # Annotations still build: the checks name the problem.
    assert declared.celery_annotations()["a.job"]["soft_time_limit"] == 90
    assert not time_limit_problems(topology(Route("a.job", "q", soft_time_limit=89)))


def test_every_route_of_the_project_runs_under_a_soft_limit_below_its_hard_limit():
    """What each consuming worker applies: the message's (the task's
    annotations) limit, else its own.  On prefork a soft limit at or past
    the hard one would put the kill off until the soft limit."""
    from projectname.topology import TOPOLOGY

    annotations = TOPOLOGY.celery_annotations()
    assert annotations["apps.testing.tasks.unique_job"]["time_limit"] == 10
    assert annotations["apps.testing.tasks.unique_job"]["soft_time_limit"] < 10
    for route in TOPOLOGY.routes:
        options = annotations[route.task]
        for worker in TOPOLOGY.consumers_of(route.queue):
            soft = options.get("soft_time_limit") or worker.soft_time_limit
            hard = options.get("time_limit") or worker.time_limit
            assert soft < hard, (route.task, worker.name, soft, hard)


def test_every_publish_path_carries_the_coherent_pair(monkeypatch):
    """The fast and bulk enqueues, the Task API's outbox and the Django task
    backend build headers from the task's attributes; ``apply_async``
    copies them, and fills a call's own limits in."""
    from celery.app.task import Task

    from apps.testing.tasks import hard_limited_main
    from projectname.celery import app
    from queueworks.dispatch.services import _task_headers

    assert (hard_limited_main.soft_time_limit, hard_limited_main.time_limit) == (2.0, 3)
    headers = _task_headers(app, hard_limited_main, "t", args=(), kwargs={})
    assert list(headers["timelimit"]) == [3, 2.0]
    assert hard_limited_main._get_exec_options()["soft_time_limit"] == 2.0
    sent = []
    monkeypatch.setattr(Task, "apply_async", lambda self, *args, **options: sent.append(options))
    hard_limited_main.apply_async(kwargs={"seconds": 0}, time_limit=1)
    hard_limited_main.apply_async(kwargs={"seconds": 0})
    assert (sent[0]["soft_time_limit"], sent[0]["time_limit"]) == (0.7, 1)
    assert "time_limit" not in sent[1]


def test_manage_topology_shows_the_limits_each_task_runs_under():
    import io
    import re

    from django.core.management import call_command

    out = io.StringIO()
    call_command("topology", stdout=out)
    assert re.search(r"apps\.testing\.tasks\.unique_job\s+main_worker\s+late\s+6\.7/10\n",
                     out.getvalue())
    assert re.search(r"apps\.testing\.tasks\.soft_limited_main\s+main_worker\s+late\s+1/-\n",
                     out.getvalue())
