"""Fair sharing: within one queue, callers with different keys take turns.

Declared twice in the topology: the route says whose turn a call is
(``Route(..., fair_share=FairShare(key="tenant_id"))``) and its queue has
sub-queues to take turns in (``Queue(..., fair_buckets=8)``).

* **Publish**: a call of a fair route is published to the sub-queue
  ``<queue>.fair.<bucket>``, bucket = CRC-32 of the key's value modulo
  ``fair_buckets`` (the same in every process and host).  Every publish path
  of the project asks ``fair_queue_for``: ``delay()``/``apply_async`` (the
  task base class), the outbox's publish and republish, and the bulk
  publisher (which splits a batch by sub-queue).  A call without the key, or
  sent to another queue on purpose, goes to the queue itself.
* **Consume**: the queue's workers consume the queue and all its sub-queues
  (``Topology.consumed_queue_names``, the supervisor's ``--queues``).
  RabbitMQ hands the channel's free prefetch slots to the queues that have
  messages in turn (its limiter notifies waiting queues in a random order),
  so a flood in one sub-queue holds at most its share of the worker, and a
  key alone in its sub-queue waits behind a few messages, not behind the
  flood.  Keys that hash to the same bucket share it: with B buckets and K
  busy keys, a key shares its turn with about K/B others.

No plugin, no exchange of another type: each sub-queue is a queue like its
parent (classic or quorum, priorities, dead letters), so the rest of the
reliability story holds unchanged (acks late, confirms, delivery limits).
Measured in bench/fairness.py.
"""

from __future__ import annotations

import zlib

from queueworks.limits.declaration import MissingKeyArgument


def fair_table(declared) -> dict[str, tuple[str, str, int]]:
    """task name -> (queue, key parameter, buckets) for each fair route."""
    queues = {queue.name: queue for queue in declared.queues}
    table = {}
    for route in declared.routes:
        queue = queues.get(route.queue)
        if route.fair_share is not None and queue is not None and queue.fair_buckets:
            table[route.task] = (route.queue, route.fair_share.key, queue.fair_buckets)
    return table


_cache: dict[str, tuple[str, str, int]] | None = None


def fair_routes() -> dict[str, tuple[str, str, int]]:
    """Asked on every publish, so built once per process
    (``queueworks.limits.unique.limits_declarations_reset`` clears it)."""
    global _cache
    if _cache is None:
        from queueworks.conf import topology

        _cache = fair_table(topology())
    return _cache


def fair_parent(topology, name: str) -> str | None:
    """The topology queue whose fair sub-queue ``name`` is (``<queue>.fair.<n>``),
    declared now or left by a larger ``fair_buckets`` (fair_stranded.py)."""
    from queueworks.core.topology import FAIR_SEPARATOR

    queue, separator, bucket = name.rpartition(FAIR_SEPARATOR)
    if separator and bucket.isdigit() and bucket.isascii() and queue in topology.queue_names():
        return queue
    return None


def fair_queue_states(topology, **options) -> dict:
    """Each topology queue's state with all of its sub-queues folded in, those
    the topology no longer declares too: messages stranded there wait on the
    queue's wait alert, its /metrics gauges and its /ops/ row
    (``queue_states`` options pass through)."""
    from queueworks.core.broker_state import queue_states

    states = queue_states(topology.declared_queue_names(),
                          also=lambda name: fair_parent(topology, name) is not None, **options)
    return fold_fair_states(topology, states)


def fold_fair_states(topology, states: dict) -> dict:
    """``states`` (name -> QueueState, sub-queues included) with each fair
    queue's sub-queues (any ``fair_parent`` names) folded into it: ready and
    unacked summed, the oldest wait the longest, consumers the queue's own.
    What a fair queue holds, for its wait alert, its /metrics gauges and its
    /ops/ row."""
    from dataclasses import replace

    folded = dict(states)
    for queue in topology.queues:
        parent = states.get(queue.name)
        mine = [name for name in states if fair_parent(topology, name) == queue.name]
        subs = [states[name] for name in mine if states[name].exists]
        folded = {name: state for name, state in folded.items() if name not in mine}
        if parent is None or not parent.exists or not subs:
            continue
        waits = [s.oldest_wait for s in (parent, *subs) if s.oldest_wait is not None]
        folded[queue.name] = replace(
            parent, ready=parent.ready + sum(s.ready for s in subs),
            unacked=parent.unacked + sum(s.unacked for s in subs),
            oldest_wait=max(waits) if waits else None)
    return folded


def fair_bucket(value: object, buckets: int) -> int:
    """The sub-queue of a key's value: stable across processes (not ``hash``)."""
    return zlib.crc32(str(value).encode("utf-8")) % buckets


def fair_queue_for(task_name: str, queue: str | None, args=(), kwargs=None) -> str | None:
    """The sub-queue a call goes to; ``queue`` unchanged (None: the route's)
    when the task is not shared fairly, the call names another queue or
    lacks the key."""
    route = fair_routes().get(task_name)
    if route is None:
        return queue
    if queue is not None and queue != route[0]:
        return queue
    return fair_target(task_name, route, args, kwargs)


def fair_target(task_name: str, route: tuple[str, str, int], args=(), kwargs=None) -> str:
    """The sub-queue of a call of a fair route ((queue, key, buckets), as in
    ``fair_table``); the queue itself when the call lacks the key."""
    route_queue, key, buckets = route
    from queueworks.limits.unique import task_signature

    try:
        signature = task_signature(task_name)
        parameters = list(signature.parameters) if signature is not None else []
        from queueworks.limits.declaration import call_argument

        value = call_argument(parameters, key, list(args or ()), dict(kwargs or {}))
    except MissingKeyArgument:
        return route_queue
    return f"{route_queue}.fair.{fair_bucket(value, buckets)}"
