"""The balanced workers' pools, through Celery's public remote control.

``inspect stats`` reports a prefork pool's processes; ``balancer_pool_grow``
(queueworks/balancer/control.py: Celery's ``pool_grow``, with the new processes
forked at once instead of at the pool's next 5-second maintenance) and
``pool_shrink`` change it (Celery refuses both next to an autoscaler, and
billiard's shrink only ends idle processes: "All processes busy" otherwise).
Both also move the worker's prefetch count with the pool.

A shrink ends idle processes asynchronously, and until the pool has reaped
them (on their exit, within a second or so) billiard still counts them as
idle: a second ``pool_shrink`` then "ends" the same process again, lowering
the pool's target without ending anything.  So all the processes a decision
removes from a pool go in one ``pool_shrink(n)``, with ``n`` no more than the
idle processes (``inspect active``: a shrink asked for more ends some and
fails without moving the prefetch count), and the pool is watched until they
are gone.
"""

from __future__ import annotations

import time

from queueworks.balancer.control import COMMAND as GROW_COMMAND

CONTROL_TIMEOUT = 3.0
# Seconds a pool may take to show a shrunk process gone.
REAP_TIMEOUT = 15.0
# How often a shrunk pool is read until it shows the processes gone: a
# decision's additions wait for its removals, so this is part of how fast a
# burst gets its processes (an idle process exits within a few tens of ms).
REAP_POLL_SECONDS = 0.05


class PoolError(Exception):
    """A worker did not answer, or refused; the message is its answer."""

    def __init__(self, message: str, moved: int = 0):
        super().__init__(message)
        # Processes moved before the refusal.
        self.moved = moved


def pool_sizes(app, nodes: list[str], *, timeout: float = CONTROL_TIMEOUT) -> dict[str, int]:
    """Node -> live pool processes, for the nodes that answered."""
    replies = app.control.inspect(destination=nodes, timeout=timeout).stats() or {}
    return {node: len(stats["pool"].get("processes") or [])
            for node, stats in replies.items() if node in nodes and "pool" in stats}


def _command(app, command: str, node: str, n: int, *, timeout: float) -> None:
    replies = app.control.broadcast(command, arguments={"n": n}, destination=[node],
                                    reply=True, timeout=timeout) or []
    answer = next((reply[node] for reply in replies if node in reply), None)
    if answer is None:
        raise PoolError(f"{node} did not answer {command} within {timeout:.0f} s")
    if "ok" not in answer:
        raise PoolError(f"{node} refused {command}: {answer.get('error') or answer}")


def _size(app, node: str, *, timeout: float) -> int:
    size = pool_sizes(app, [node], timeout=timeout).get(node)
    if size is None:
        raise PoolError(f"{node} did not answer inspect stats within {timeout:.0f} s")
    return size


def _running(app, node: str, *, timeout: float) -> int:
    replies = app.control.inspect(destination=[node], timeout=timeout).active() or {}
    if node not in replies:
        raise PoolError(f"{node} did not answer inspect active within {timeout:.0f} s")
    return len(replies[node])


def pool_change(app, node: str, *, by: int, timeout: float = CONTROL_TIMEOUT) -> int:
    """Grow (by > 0) or shrink (by < 0) the pool; returns how many processes moved.

    A shrink removes at most the idle processes and returns once the pool
    shows them gone.  Raises PoolError (with ``moved``) when the worker
    refuses, does not answer, or every process is busy.
    """
    if by > 0:
        _command(app, GROW_COMMAND, node, by, timeout=timeout)
        return by
    before = _size(app, node, timeout=timeout)
    idle = before - _running(app, node, timeout=timeout)
    count = min(-by, idle)
    if count <= 0:
        raise PoolError(f"{node}: all {before} processes busy, none removed")
    _command(app, "pool_shrink", node, count, timeout=timeout)
    deadline = time.monotonic() + REAP_TIMEOUT
    while time.monotonic() < deadline:
        size = pool_sizes(app, [node], timeout=timeout).get(node)
        if size is not None and size <= before - count:
            break
        time.sleep(REAP_POLL_SECONDS)
    else:
        raise PoolError(f"{node} still shows more than {before - count} processes "
                        f"{REAP_TIMEOUT:.0f} s after a shrink", moved=count)
    if count < -by:
        raise PoolError(f"{node}: {count} of {-by} removed, the others busy", moved=count)
    return count


def events_renew(app, nodes: list[str]) -> None:
    """Ask the balanced workers for task events (renews their lease, queueworks/core/events.py)."""
    app.control.broadcast("enable_events", destination=nodes, reply=False)
