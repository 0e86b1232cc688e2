"""Queue liveness: consumer and message counts of every topology queue, against
the consumers the topology expects (``manage.py liveness``)."""

from __future__ import annotations

from dataclasses import dataclass

from queueworks.conf import TOPOLOGY


@dataclass(frozen=True)
class QueueLiveness:
    queue: str
    consumers: int
    expected: int
    messages: int
    workers: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.consumers >= self.expected


def expected_consumers(worker_names, *, hosts: int, inventory=None) -> int:
    """Consumers a queue should have: with an inventory, one per host running
    each of its worker programs; without, every program on ``hosts`` hosts."""
    if inventory is None:
        return len(worker_names) * hosts
    return sum(len(inventory.hosts_running(name)) for name in worker_names)


def queues_liveness(*, hosts: int = 1, broker_url: str | None = None,
                    inventory=None) -> list[QueueLiveness]:
    """Consumer and message counts of every topology queue, from the broker.

    ``expected`` = worker programs consuming the queue x ``hosts`` running
    them (each Celery worker holds one consumer per queue).  A queue below
    that has a worker that stopped consuming (or is down).  With an
    ``inventory`` the hosts running each program are counted instead.  Uses passive
    queue.declare, so it works without the management plugin.
    """
    from queueworks.core.broker_state import queue_counts
    from queueworks.conf import celery_app
    app = celery_app()

    result = []
    with app.connection_for_write(broker_url) as connection:
        connection.ensure_connection(max_retries=2)
        counts = queue_counts(connection, TOPOLOGY.queue_names())
        for queue in TOPOLOGY.queues:
            workers = tuple(w.name for w in TOPOLOGY.consumers_of(queue.name))
            # None: NOT_FOUND, nobody ever declared it.
            messages, consumers = counts[queue.name] or (0, 0)
            result.append(QueueLiveness(
                queue.name, consumers, expected_consumers(workers, hosts=hosts, inventory=inventory),
                messages, workers))
    return result
