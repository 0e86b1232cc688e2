"""``Balance``: the per-host process balancer's declaration in the topology.

Re-exported by ``queueworks/core/topology.py``, where a declaration imports it
from; the balancer that acts on it is ``queueworks/balancer``.  What it moves
depends on the program's pool (docs/balancer.md): a prefork program's pool
processes (Celery's ``pool_grow``/``pool_shrink``), or a program of
single-process workers' processes themselves (``Worker.processes``:
supervisord starts and stops them one by one).  Either way a "process" runs
one task at a time, so the decision (queueworks/balancer/decision.py) is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from queueworks.core.topology import Topology, Worker


def moves_processes(worker: Worker) -> bool:
    """Balanced by starting and stopping processes, not by resizing a pool:
    every pool but prefork runs its tasks in one process (concurrency 1)."""
    return worker.pool != "prefork"


def starting_processes(worker: Worker) -> int:
    """Processes running one task at a time that the program starts with."""
    return worker.processes if moves_processes(worker) else worker.concurrency


@dataclass(frozen=True)
class Balance:
    """Processes that follow the backlog across some worker programs of a host.

    Off unless declared (``Topology.balance``).  A ``balancer`` program on each
    host moves processes between the named ``workers``: prefork pool processes
    with Celery's ``pool_grow``/``pool_shrink``, or whole single-process
    workers of a program declared with ``processes`` (supervisord starts and
    stops them; queueworks/balancer).  Toward the program whose queue would
    make a task wait longest (backlog x mean runtime / processes), only
    toward waiting work and never away from it, never below a program's
    minimum or above its maximum, never more than ``budget`` processes in
    all, at most ``max_shift`` added (and at most as many removed) per
    decision and no decision within ``cooldown_seconds`` of the last move.
    Each worker's own ``concurrency`` (prefork) or ``processes`` (any other
    pool) is where it starts.
    """

    workers: tuple[str, ...]
    # Processes of all balanced programs together, on each host.
    budget: int
    # Per program, unless ``limits`` names it: (program, minimum, maximum).
    min_processes: int = 1
    max_processes: int | None = None
    limits: tuple[tuple[str, int, int], ...] = ()
    max_shift: int = 1
    cooldown_seconds: float = 10.0
    # How often the balancer reads the queues and decides.
    interval_seconds: float = 2.0
    # Mean runtime over this many recent tasks per program (task events).
    runtime_window: int = 50

    def __post_init__(self):
        if not self.workers:
            raise ValueError("Balance: name the worker programs to balance in workers.")
        if len(set(self.workers)) != len(self.workers):
            raise ValueError("Balance: a worker program is named twice in workers.")
        if self.budget < 1 or self.max_shift < 1 or self.min_processes < 1:
            raise ValueError("Balance: budget, max_shift and min_processes must be at least 1.")
        if self.cooldown_seconds < 0 or self.interval_seconds <= 0 or self.runtime_window < 1:
            raise ValueError("Balance: cooldown_seconds >= 0, interval_seconds > 0, "
                             "runtime_window >= 1.")
        for name, minimum, maximum in self.limits:
            if name not in self.workers:
                raise ValueError(f"Balance: limits name {name!r}, which is not in workers.")
            if not 1 <= minimum <= maximum:
                raise ValueError(f"Balance: limits for {name!r} need 1 <= minimum <= maximum.")
        if sum(self.bounds(name)[0] for name in self.workers) > self.budget:
            raise ValueError("Balance: the programs' minimums add up to more than the budget.")

    def bounds(self, worker: str) -> tuple[int, int]:
        """(minimum, maximum) processes of one balanced program."""
        for name, minimum, maximum in self.limits:
            if name == worker:
                return minimum, min(maximum, self.budget)
        maximum = self.budget if self.max_processes is None else self.max_processes
        return self.min_processes, min(maximum, self.budget)

    def problems(self, topology: Topology) -> list[str]:
        """Why this declaration cannot balance ``topology``'s programs (empty: it can)."""
        problems = []
        for name in self.workers:
            worker = next((w for w in topology.workers if w.name == name), None)
            if worker is None:
                problems.append(f"balanced worker '{name}' is not a declared worker program")
                continue
            minimum, maximum = self.bounds(name)
            if moves_processes(worker) and worker.concurrency != 1:
                problems.append(f"balanced worker '{name}' has pool '{worker.pool}' with "
                                f"concurrency {worker.concurrency}: a program balanced by "
                                "processes runs one task per process (concurrency=1)")
            if worker.autoscale:
                problems.append(f"balanced worker '{name}' is autoscaled: Celery refuses "
                                "pool_grow/pool_shrink next to its autoscaler")
            starting = starting_processes(worker)
            if not minimum <= starting <= maximum:
                field = "processes" if moves_processes(worker) else "concurrency"
                problems.append(f"balanced worker '{name}' starts with {field} "
                                f"{starting}, outside its bounds {minimum}-{maximum}")
            if not worker.task_events and not worker.task_events_lease:
                problems.append(f"balanced worker '{name}' sends no task events and has no "
                                "task_events_lease: the balancer could not learn its runtimes")
        starting = sum(starting_processes(w) for w in topology.workers if w.name in self.workers)
        if starting > self.budget:
            problems.append(f"balanced workers start with {starting} processes, over the "
                            f"budget of {self.budget}")
        return problems
