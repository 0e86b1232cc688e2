"""System checks: a rate or concurrency limit that cannot work is refused.

* ``queueworks_limits.E001``: the key names an argument the task does not take.
* ``queueworks_limits.E002``: a number that is not positive (starts, period,
  running, lease) or a negative burst.
* ``queueworks_limits.E003``: the limited route's task is not a registered
  task (a limit on a task nothing runs).
* ``queueworks_limits.E004``: a lease shorter than the route's hard time
  limit: a live run could outlive its slot and let one more run start.
"""

from __future__ import annotations

import inspect

from django.core.checks import Error, Tags, register

from queueworks.limits.declaration import ConcurrencyLimit, RateLimit
from queueworks.limits.rules import lease_for


def _numbers(route) -> list[str]:
    problems = []
    rate, concurrency = route.rate_limit, route.concurrency_limit
    if isinstance(rate, RateLimit):
        if not isinstance(rate.starts, int) or rate.starts < 1:
            problems.append(f"rate_limit.starts must be a whole number >= 1, not {rate.starts!r}")
        if not rate.per_seconds or rate.per_seconds <= 0:
            problems.append(f"rate_limit.per_seconds must be > 0, not {rate.per_seconds!r}")
        if not isinstance(rate.burst, int) or rate.burst < 0:
            problems.append(f"rate_limit.burst must be a whole number >= 0, not {rate.burst!r}")
    if isinstance(concurrency, ConcurrencyLimit):
        if not isinstance(concurrency.running, int) or concurrency.running < 1:
            problems.append("concurrency_limit.running must be a whole number >= 1, "
                            f"not {concurrency.running!r}")
        if concurrency.lease_seconds is not None and concurrency.lease_seconds <= 0:
            problems.append("concurrency_limit.lease_seconds must be > 0, "
                            f"not {concurrency.lease_seconds!r}")
    return problems


def _parameters(task) -> list[str] | None:
    try:
        parameters = inspect.signature(task.run).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None  # **kwargs takes any name
    return [p.name for p in parameters
            if p.kind is not inspect.Parameter.VAR_POSITIONAL]


def check_limits(topology, tasks) -> list[Error]:
    """``tasks``: registered task name -> task object."""
    errors: list[Error] = []
    for route in topology.routes:
        declared = [(name, rule) for name, rule in (("rate_limit", route.rate_limit),
                                                    ("concurrency_limit", route.concurrency_limit))
                    if rule is not None]
        if not declared:
            continue
        for problem in _numbers(route):
            errors.append(Error(f"Route '{route.task}': {problem}.",
                                hint="See docs/limits.md.", id="queueworks_limits.E002"))
        task = tasks.get(route.task)
        if task is None:
            errors.append(Error(
                f"Route '{route.task}' declares {', '.join(n for n, _ in declared)} but no "
                "such task is registered: the limit would never apply.",
                hint="Check the task's dotted name.", id="queueworks_limits.E003"))
            continue
        parameters = _parameters(task)
        for name, rule in declared:
            if rule.key and parameters is not None and rule.key not in parameters:
                errors.append(Error(
                    f"Route '{route.task}': {name}.key is {rule.key!r}, an argument the task "
                    f"does not take (it takes {', '.join(parameters) or 'none'}).",
                    hint="Name one of the task's parameters, or no key for the task as a whole.",
                    id="queueworks_limits.E001"))
        concurrency = route.concurrency_limit
        if concurrency is not None and concurrency.lease_seconds:
            hard = route.time_limit or max(
                [w.time_limit for w in topology.consumers_of(route.queue)] or [0])
            if concurrency.lease_seconds < hard:
                errors.append(Error(
                    f"Route '{route.task}': concurrency_limit.lease_seconds "
                    f"({concurrency.lease_seconds}) is shorter than the run's hard time limit "
                    f"({hard} s): a live run could lose its slot and one more would start.",
                    hint=f"Leave lease_seconds unset (derived: {lease_for(topology, route):g} s) "
                         "or make it longer than the time limit.",
                    id="queueworks_limits.E004"))
    return errors


@register(Tags.compatibility, "queueworks_limits")
def limits_check(app_configs=None, **kwargs):
    from queueworks.conf import TOPOLOGY, celery_app
    from queueworks.core.checks import project_task_names

    if not any(r.rate_limit or r.concurrency_limit for r in TOPOLOGY.routes):
        return []
    project_task_names()  # imports every app's tasks module
    return check_limits(TOPOLOGY, celery_app().tasks)
