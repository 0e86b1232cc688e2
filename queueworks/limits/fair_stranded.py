"""Fair sub-queues the topology no longer declares, and the messages left in them.

Lowering a queue's ``fair_buckets`` (or removing fair sharing) leaves the
sub-queues past the new count on the broker: the workers, restarted with the
new topology, no longer consume them, so whatever they hold would wait
forever, silently.  Here:

* ``stranded_fair_queues`` finds them: every live ``<queue>.fair.<n>`` of a
  topology queue that the topology does not declare (the broker's queue list
  from the management API, else a passive declare of every possible bucket);
* ``fair_messages_rehome`` moves each message of one to where a publish would
  send it today (``fair_target`` with the call's arguments: a declared
  sub-queue, or the queue itself) through ``migrate_queues``' own move
  (queueworks/core/queue_migration.py): each copy confirmed before its
  original is acknowledged, so an interruption can duplicate one message,
  never lose one.

``manage.py doctor`` fails on a stranded sub-queue holding messages, and
``manage.py migrate_queues`` rehomes them.  An emptied sub-queue is left in
place: a process still running the old topology may publish to it, and
deleting it would make those publishes vanish; doctor warns until it is
deleted by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import amqp

from queueworks.core.broker_state import BrokerStateError, queue_counts, queue_states
from queueworks.core.queue_migration import move_messages_each

# Queue.fair_buckets is at most 64 (queueworks/core/topology.py).
MAX_BUCKETS = 64
JSON = "application/json"


@dataclass(frozen=True)
class StrandedQueue:
    name: str  # "<queue>.fair.<n>"
    parent: str  # the topology queue it belonged to
    ready: int


def _stranded_name(topology, name: str) -> str | None:
    """The parent queue of ``name`` when it is a sub-queue the topology left."""
    from queueworks.limits.fair import fair_parent

    parent = fair_parent(topology, name)
    return parent if parent and name not in topology.declared_queue_names() else None


def _live_names(connection, topology, broker_url: str | None) -> list[str]:
    """The stranded sub-queues' names: from the vhost's queue list (management
    API), else a passive declare of each possible bucket of each queue."""
    from queueworks.core.topology import FAIR_SEPARATOR

    try:
        return list(queue_states([], broker_url=broker_url,
                                 also=lambda name: _stranded_name(topology, name) is not None))
    except BrokerStateError:
        candidates = [f"{queue.name}{FAIR_SEPARATOR}{n}" for queue in topology.queues
                      for n in range(MAX_BUCKETS)]
        return [name for name, count in queue_counts(connection, candidates).items()
                if count is not None]


def stranded_fair_queues(connection, topology, *, broker_url: str | None = None
                         ) -> list[StrandedQueue]:
    """The sub-queues on the broker that ``topology`` no longer declares."""
    names = sorted(name for name in _live_names(connection, topology, broker_url)
                   if _stranded_name(topology, name))
    counts = queue_counts(connection, names)
    return [StrandedQueue(name=name, parent=_stranded_name(topology, name), ready=count[0])
            for name, count in counts.items() if count is not None]


def _target(topology, message: amqp.Message, parent: str) -> str:
    """Where a publish would send this call today; the queue itself when the
    body cannot be read (its worker dead-letters poison)."""
    from queueworks.limits.fair import fair_table, fair_target

    headers = message.properties.get("application_headers") or {}
    task = headers.get("task")
    route = fair_table(topology).get(task)
    if route is None or route[0] != parent or message.properties.get("content_type") != JSON:
        return parent
    try:
        args, kwargs, _ = json.loads(message.body)
    except (ValueError, TypeError):
        return parent
    return fair_target(task, route, args, kwargs)


def fair_messages_rehome(connection, stranded: StrandedQueue, *, topology) -> dict[str, int]:
    """Move every ready message of ``stranded`` to its queue today; returns
    target -> count.  Refuses (BrokerStateError) while a target is missing."""
    queue = next(q for q in topology.queues if q.name == stranded.parent)
    targets = [queue.name, *queue.fair_queue_names()]
    missing = [name for name, count in queue_counts(connection, targets).items() if count is None]
    if missing:
        raise BrokerStateError(f"{', '.join(missing)} not declared on the broker: start the "
                               f"workers of {queue.name} with the current topology first")
    return move_messages_each(connection, source=stranded.name, target_of=lambda message: (
        _target(topology, message, stranded.parent)))
