"""`manage.py check` refuses a unique or fair-share declaration that cannot work.

* queueworks_limits.E101: a ``Unique`` key names a parameter the task does not take.
* queueworks_limits.E102: the task of a unique route cannot be found (nothing to check
  the key against, and no worker could run it).
* queueworks_limits.W103: a unique route's ``lease_seconds`` is shorter than its hard
  time limit: a run still alive could lose its key to a second run.
* queueworks_limits.E104: a ``FairShare`` key names a parameter the task does not take.
* queueworks_limits.E105: a fair-share route's queue has no sub-queues
  (``Queue(fair_buckets=...)``), so its callers cannot take turns.
"""

from __future__ import annotations

import inspect

from django.core.checks import Error, Tags, Warning, register


def _takes(signature: inspect.Signature, name: str) -> bool:
    parameters = signature.parameters
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def limits_declaration_problems(topology, signature_of) -> list:
    """The problems of ``topology``'s unique and fair-share routes;
    ``signature_of(task_name)`` is the task's ``inspect.Signature`` or None."""
    problems: list = []
    queues = {queue.name: queue for queue in topology.queues}
    for route in topology.routes:
        if route.unique is None and route.fair_share is None:
            continue
        signature = signature_of(route.task)
        if signature is None:
            problems.append(Error(
                f"Route {route.task!r} declares a unique or fair-share key, but no task "
                f"{route.task!r} exists to take it.",
                hint="Fix the route's task name, or drop the declaration.", id="queueworks_limits.E102"))
            continue
        if route.unique is not None:
            for name in route.unique.parameters:
                if not _takes(signature, name):
                    problems.append(Error(
                        f"Route {route.task!r}: Unique(key={route.unique.key!r}) names "
                        f"parameter {name!r}, which the task does not take "
                        f"(it takes: {', '.join(signature.parameters) or 'nothing'}).",
                        hint="Name one of the task's parameters.", id="queueworks_limits.E101"))
            limit = route.time_limit or max(
                (w.time_limit for w in topology.consumers_of(route.queue)), default=0)
            if route.unique.lease_seconds is not None and route.unique.lease_seconds <= limit:
                problems.append(Warning(
                    f"Route {route.task!r}: Unique(lease_seconds={route.unique.lease_seconds}) "
                    f"is not longer than its hard time limit ({limit} s): a run still alive "
                    "could lose its key to a second run.",
                    hint="Leave lease_seconds unset (time limit plus a margin) or raise it.",
                    id="queueworks_limits.W103"))
        if route.fair_share is not None:
            if not _takes(signature, route.fair_share.key):
                problems.append(Error(
                    f"Route {route.task!r}: FairShare(key={route.fair_share.key!r}) names a "
                    "parameter the task does not take "
                    f"(it takes: {', '.join(signature.parameters) or 'nothing'}).",
                    hint="Name one of the task's parameters.", id="queueworks_limits.E104"))
            queue = queues.get(route.queue)
            if queue is not None and not getattr(queue, "fair_buckets", 0):
                problems.append(Error(
                    f"Route {route.task!r} shares queue {route.queue!r} fairly, but the queue "
                    "has no sub-queues for its callers to take turns in.",
                    hint=f"Declare Queue({route.queue!r}, ..., fair_buckets=8).",
                    id="queueworks_limits.E105"))
    return problems


@register(Tags.compatibility, "limits")
def limits_declaration_check(app_configs=None, **kwargs):
    from queueworks.conf import topology
    from queueworks.limits.unique import task_signature

    return limits_declaration_problems(topology(), task_signature)
