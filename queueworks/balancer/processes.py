"""The processes of a balanced program of single-process workers, through supervisord.

A program declared with ``processes`` (``Worker.processes``, a single-process
pool such as queueworks/dispatch/pool.py's) is a supervisor process group,
"<program>_1".. up to the balance's maximum; those above ``processes`` do
not start with supervisord (queueworks/core/supervisor.py).  It has no pool to
grow: the balancer starts a stopped process of the group, or stops a running
one.  A stop is supervisor's TERM, Celery's warm shutdown: the process
finishes the task it runs and gives its prefetched messages back unacked
(acks late: redelivered to another process, never lost), within
``stopwaitsecs`` (the longest hard time limit + a margin).

As with a prefork pool, only idle processes are stopped: a process whose node
answers ``inspect active`` with no task.  A solo worker runs its task in the
process that answers remote control, so a busy one does not answer and counts
as busy.
"""

from __future__ import annotations

from queueworks.balancer.pools import CONTROL_TIMEOUT, PoolError
from queueworks.core.supervisord_client import LIVE_STATES, Supervisord


def process_number(info: dict) -> int:
    return int(info["name"].rpartition("_")[2])


def live_processes(supervisord: Supervisord, program: str) -> list[dict]:
    """The program's processes that run or are starting (not the stopped or stopping ones)."""
    return [info for info in supervisord.processes_of(program) if info["statename"] in LIVE_STATES]


def _idle_nodes(app, nodes: list[str], *, timeout: float) -> set[str]:
    replies = app.control.inspect(destination=nodes, timeout=timeout).active() or {}
    return {node for node, active in replies.items() if node in nodes and not active}


def process_change(app, supervisord: Supervisord, program: str, *, by: int, node_of,
                   timeout: float = CONTROL_TIMEOUT) -> int:
    """Start (by > 0) or stop (by < 0) processes of ``program``; returns how many.

    ``node_of(number)`` is the Celery node of process ``number``.  Starts the
    lowest-numbered stopped processes and stops the highest-numbered idle
    ones, neither waited for (supervisord shows a started process STARTING
    and a stopped one STOPPING at once, and neither counts as live).  Raises
    PoolError (with ``moved``) when too few processes are stopped or idle.
    """
    processes = supervisord.processes_of(program)
    if by > 0:
        stopped = [info for info in processes if info["statename"] not in LIVE_STATES
                   and info["statename"] != "STOPPING"]
        chosen = stopped[:by]
        for info in chosen:
            supervisord.start(info["full_name"], wait=False)
        if len(chosen) < by:
            raise PoolError(f"{program}: {len(chosen)} of {by} processes started, "
                            f"no other stopped process in the group", moved=len(chosen))
        return by
    running = [info for info in processes if info["statename"] == "RUNNING"]
    nodes = {node_of(process_number(info)): info for info in running}
    idle = _idle_nodes(app, list(nodes), timeout=timeout) if nodes else set()
    chosen = sorted((nodes[node] for node in idle), key=process_number, reverse=True)[:-by]
    if not chosen:
        raise PoolError(f"{program}: all {len(running)} running processes busy, none stopped")
    for info in chosen:
        # Not waited for: the warm shutdown of an idle worker takes a second or two.
        supervisord.stop(info["full_name"], wait=False)
    if len(chosen) < -by:
        raise PoolError(f"{program}: {len(chosen)} of {-by} stopped, the others busy",
                        moved=len(chosen))
    return len(chosen)
