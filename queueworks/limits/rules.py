"""Which limits apply to a task, read once per process from the topology."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import lru_cache

from queueworks.limits.concurrency import LEASE_MARGIN_SECONDS
from queueworks.limits.declaration import ConcurrencyLimit, RateLimit

RATE, CONCURRENCY = "rate", "concurrency"


@dataclass(frozen=True)
class TaskLimits:
    task: str
    rate: RateLimit | None
    concurrency: ConcurrencyLimit | None
    lease_seconds: float

    @property
    def rate_name(self) -> str:
        return f"{self.task}:{RATE}"

    @property
    def concurrency_name(self) -> str:
        return f"{self.task}:{CONCURRENCY}"


def lease_for(topology, route) -> float:
    """A slot's lease: the declaration's, else the longest a run may last
    (the route's hard time limit, else that of the workers consuming its
    queue) plus a margin, so a live run never outlives its own lease."""
    rule = route.concurrency_limit
    if rule is not None and rule.lease_seconds:
        return float(rule.lease_seconds)
    if route.time_limit:
        hard = route.time_limit
    else:
        hard = max([w.time_limit for w in topology.consumers_of(route.queue)] or [90])
    return float(hard + LEASE_MARGIN_SECONDS)


@lru_cache(maxsize=None)
def task_limits(task_name: str) -> TaskLimits | None:
    """The rate and concurrency limits of ``task_name``; None without any."""
    from queueworks.conf import topology

    top = topology()
    route = top.route_for(task_name)
    if route is None or (route.rate_limit is None and route.concurrency_limit is None):
        return None
    return TaskLimits(task=task_name, rate=route.rate_limit,
                      concurrency=route.concurrency_limit,
                      lease_seconds=lease_for(top, route))


@lru_cache(maxsize=None)
def _signature(task) -> inspect.Signature:
    return inspect.signature(task.run)


def key_value(task, name: str | None, args, kwargs) -> str | None:
    """The key of one call: the value of argument ``name`` as text ("" for
    no key); None when the call cannot be bound to the task's parameters
    (the task itself will refuse it)."""
    if not name:
        return ""
    try:
        bound = _signature(task).bind(*(args or ()), **(kwargs or {}))
    except TypeError:
        return None
    bound.apply_defaults()
    if name not in bound.arguments:
        return None
    return str(bound.arguments[name])[:255]


def limit_key_arguments(task_name: str) -> dict[str, str]:
    """{argument name: "rate" / "concurrency"} for the keyed limits of a task."""
    limits = task_limits(task_name)
    if limits is None:
        return {}
    keys: dict[str, str] = {}
    for kind, rule in ((RATE, limits.rate), (CONCURRENCY, limits.concurrency)):
        if rule is not None and rule.key:
            keys.setdefault(rule.key, kind)
    return keys


def missing_key_problems(task_name: str, signature: inspect.Signature, args,
                         kwargs) -> list[str]:
    """Why a call cannot be keyed: the key arguments it does not pass (a
    default does not count: the caller names its bucket, as the Task API
    requires).  ``signature``: the parameters a caller passes."""
    keys = limit_key_arguments(task_name)
    if not keys:
        return []
    try:
        bound = signature.bind_partial(*(args or ()), **(kwargs or {}))
    except TypeError as exc:
        return [str(exc)]
    return [f"{name} is required: the task's {kind} limit is keyed on it"
            for name, kind in keys.items() if name not in bound.arguments]
