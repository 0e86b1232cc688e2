"""The time limits a task runs under: its route's (or its caller's), made
coherent with the limits of the workers that run it.

A route's limits override its worker's (``Worker.soft_time_limit`` /
``time_limit``, the ``--soft-time-limit`` / ``--time-limit`` of the worker
command); a limit the route leaves out falls back to the worker's.  That
fallback can make the pair incoherent, and each pool then fails the
declaration its own way:

* prefork (Celery's asynchronous pool) starts the hard-limit timer only when
  the soft limit fires, ``hard - soft`` after it: with a route hard limit of
  10 s under the worker's 60 s soft limit, the task is signalled at 60 s and
  killed then, never at 10 s;
* the bulk lane's solo pool (queueworks/dispatch/timelimits.py) drops a soft
  limit at or past the hard one: the task is stopped at its hard limit, with
  no soft limit before it to clean up.

So a route (or a call) with a hard limit at or below a consuming worker's
soft limit gets a soft limit of its own, below the hard one in the worker's
proportion (main_worker's 60/90: two thirds of it), and the pair travels in
every message (``Topology.celery_annotations`` sets both task attributes,
which every publish path copies into the ``timelimit`` header, and which a
worker falls back to for a message without one).  A soft limit that would
fire at or after the hard one is refused: at declaration (``Route``), by the
system checks (a route's soft limit alone against its workers' hard limits,
a worker's soft limit past its own hard limit), or per call (``ValueError``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from queueworks.core.topology import Route, Topology, Worker

Limit = float | int | None


def soft_limit_below(hard: float, workers: Iterable[Worker]) -> float | None:
    """A soft limit for a ``hard`` limit on ``workers``: None when each
    worker's own soft limit already fires before ``hard``, else ``hard`` in
    the smallest proportion of soft to hard among them (a worker without a
    margin, soft = hard, gives none: ``hard``, both fire together)."""
    workers = list(workers)
    if not any(worker.soft_time_limit >= hard for worker in workers):
        return None
    ratio = min(min(worker.soft_time_limit / worker.time_limit, 1.0) for worker in workers)
    soft = round(hard * ratio, 1)
    return soft if 0 < soft <= hard else hard * ratio


def _queue_of(topology: Topology, task_name: str, route: Route | None) -> str:
    return route.queue if route is not None else topology.default_queue


def call_time_limits(topology: Topology, task_name: str, *, soft_time_limit: Limit = None,
                     time_limit: Limit = None) -> tuple[Limit, Limit]:
    """``(soft, hard)`` for a call of ``task_name``: the caller's limits, else
    its route's, with a soft limit below the hard one where the workers'
    own would not fire first.  None: the worker's own limit.

    ``ValueError`` for a soft limit that could not fire before the hard one
    (the caller's own pair, or a soft limit alone at or past the hard limit
    of a worker that runs the task)."""
    if soft_time_limit and time_limit and soft_time_limit >= time_limit:
        raise ValueError(f"soft_time_limit ({soft_time_limit} s) must be below "
                         f"time_limit ({time_limit} s)")
    route = topology.route_for(task_name)
    workers = topology.consumers_of(_queue_of(topology, task_name, route))
    hard = time_limit or (route.time_limit if route is not None else None) or None
    soft = soft_time_limit or (route.soft_time_limit if route is not None else None) or None
    if hard and soft and soft >= hard:
        # One from the caller, one from the route: the hard limit stands.
        soft = None
    if hard and soft is None:
        soft = soft_limit_below(hard, workers)
    if soft and not hard:
        shortest = min((worker.time_limit for worker in workers), default=None)
        if shortest is not None and soft >= shortest:
            raise ValueError(f"soft_time_limit ({soft} s) of {task_name} must be below the "
                             f"hard time limit of the workers that run it ({shortest} s)")
    return soft, hard


def refuse_incoherent_route_limits(route: Route) -> None:
    """``ValueError`` for a route whose limits are not positive seconds, or
    whose soft limit is not below its hard limit."""
    for name in ("soft_time_limit", "time_limit"):
        value = getattr(route, name)
        if value is not None and value <= 0:
            raise ValueError(f"Route {route.task!r}: {name} must be positive seconds or None.")
    if route.soft_time_limit and route.time_limit and route.soft_time_limit >= route.time_limit:
        raise ValueError(f"Route {route.task!r}: soft_time_limit must be below time_limit "
                         "(a soft limit at or past the hard one never fires first).")


def route_time_limits(topology: Topology, route: Route) -> tuple[Limit, Limit]:
    """``(soft, hard)`` of ``route`` as its annotations carry them (a soft
    limit alone that cannot fire first stays as declared: the system checks
    name it, ``time_limit_problems``)."""
    try:
        return call_time_limits(topology, route.task)
    except ValueError:
        return route.soft_time_limit, route.time_limit


def time_limit_problems(topology: Topology) -> list[str]:
    """Declarations whose soft limit could not fire before their hard limit."""
    problems = []
    for worker in topology.workers:
        if worker.soft_time_limit > worker.time_limit:
            problems.append(
                f"Worker '{worker.name}': soft_time_limit ({worker.soft_time_limit} s) is past "
                f"time_limit ({worker.time_limit} s); the prefork pool would only kill a stuck "
                "task at the soft limit.")
    for route in topology.routes:
        if route.soft_time_limit and not route.time_limit:
            for worker in topology.consumers_of(route.queue):
                if route.soft_time_limit >= worker.time_limit:
                    problems.append(
                        f"Route '{route.task}': soft_time_limit ({route.soft_time_limit} s) is "
                        f"not below the hard time limit of worker '{worker.name}' "
                        f"({worker.time_limit} s); it would never fire first, and the prefork "
                        "pool would kill a stuck task only at it.")
    return problems
