"""The balanced workers' pools, through Celery's public remote control.

``inspect stats`` reports a prefork pool's processes; ``pool_grow`` and
``pool_shrink`` change it (Celery refuses both next to an autoscaler, and
billiard's shrink only ends idle processes: "All processes busy" otherwise).
Both also move the worker's prefetch count with the pool.

A shrink ends an idle process asynchronously, and until the pool has reaped
it (on its exit, within a second or so) billiard still counts it as idle: a
second ``pool_shrink`` then "ends" the same process again, lowering the
pool's target without ending anything.  So processes are removed one at a
time, each once the pool shows the one before gone.
"""

from __future__ import annotations

import time

CONTROL_TIMEOUT = 3.0
# Seconds a pool may take to show a shrunk process gone.
REAP_TIMEOUT = 15.0


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


def _command(app, command: str, node: str, *, timeout: float) -> None:
    replies = app.control.broadcast(command, arguments={"n": 1}, destination=[node],
                                    reply=True, timeout=timeout) or []
    answer = next((reply[node] for reply in replies if node in reply), None)
    if answer is None:
        raise PoolError(f"{node} did not answer {command} within {timeout:.0f} s")
    if "ok" not in answer:
        raise PoolError(f"{node} refused {command}: {answer.get('error') or answer}")


def pool_change(app, node: str, *, by: int, timeout: float = CONTROL_TIMEOUT) -> int:
    """Grow (by > 0) or shrink (by < 0) one process at a time; returns how many moved.

    One at a time: a shrink of n that finds fewer idle processes ends some
    and fails without moving the prefetch count.  Raises PoolError (naming
    what moved before) when the worker refuses or does not answer.
    """
    command = "pool_grow" if by > 0 else "pool_shrink"
    moved = 0
    for _ in range(abs(by)):
        try:
            before = None if by > 0 else _size(app, node, timeout=timeout)
            _command(app, command, node, timeout=timeout)
            if before is not None:
                _wait_reaped(app, node, below=before, timeout=timeout)
        except PoolError as error:
            raise PoolError(f"{error} ({moved} of {abs(by)} done)", moved=moved) from None
        moved += 1
    return moved


def _size(app, node: str, *, timeout: float) -> int:
    size = pool_sizes(app, [node], timeout=timeout).get(node)
    if size is None:
        raise PoolError(f"{node} did not answer inspect stats within {timeout:.0f} s")
    return size


def _wait_reaped(app, node: str, *, below: int, timeout: float) -> None:
    deadline = time.monotonic() + REAP_TIMEOUT
    while time.monotonic() < deadline:
        size = pool_sizes(app, [node], timeout=timeout).get(node)
        if size is not None and size < below:
            return
        time.sleep(0.2)
    raise PoolError(f"{node} still shows {below} processes {REAP_TIMEOUT:.0f} s after a shrink")


def events_renew(app, nodes: list[str]) -> None:
    """Ask the balanced workers for task events (renews their lease, apps/core/events.py)."""
    app.control.broadcast("enable_events", destination=nodes, reply=False)
