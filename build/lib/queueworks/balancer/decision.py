"""The balancer's decision: where pool processes should go, from numbers only.

No I/O here (queueworks/balancer/runner.py reads the broker and the workers and
applies the moves), so every rule is a unit test away:

* each program's **expected wait** is ``backlog x mean runtime / processes``:
  the seconds a task published now waits before a process is free for it;
* the processes above the programs' floors go to the programs in proportion
  to their waiting work (``backlog x mean runtime``), which makes the expected
  waits equal, but never more to a program than it has tasks waiting;
* a program's floor is its minimum, or, while it has tasks waiting (now or
  at the previous reading), the processes it has: work already waiting is
  never made to wait longer for another program's, and a backlog that
  flickers empty for one reading does not lose its processes;
* what no backlog claims stays where it is: a move costs the receiving
  worker a fork per process (its main process, which also hands out its
  tasks, is busy meanwhile), so processes move only toward waiting work,
  never speculatively; processes free of any program (a refused grow) go
  to the programs with the fewest;
* never below a program's minimum, never above its maximum, never more than
  the budget in all;
* at most ``max_shift`` processes added and at most ``max_shift`` removed per
  decision, and no decision within ``cooldown_seconds`` of the last move, so
  a short spike cannot make the pools swing.

Unknown runtimes (no task finished yet on a program) count as the mean of the
known ones, and as 1 s when none is known: the backlog alone decides then.
"""

from __future__ import annotations

from dataclasses import dataclass

# Seconds assumed per task when no program has a measured runtime yet.
UNKNOWN_RUNTIME = 1.0


@dataclass(frozen=True)
class ProgramLoad:
    """One balanced program as the balancer sees it at one instant."""

    name: str
    processes: int
    # Messages ready in the program's queues.
    backlog: int
    # Mean seconds per task over recent tasks; None: none measured yet.
    mean_runtime: float | None
    minimum: int
    maximum: int
    # Messages ready in the program's queues at the previous reading.
    previous_backlog: int = 0

    @property
    def has_waited(self) -> bool:
        """Tasks waiting now or at the previous reading."""
        return self.backlog > 0 or self.previous_backlog > 0


@dataclass(frozen=True)
class Move:
    program: str
    before: int
    after: int
    reason: str


@dataclass(frozen=True)
class Decision:
    moves: tuple[Move, ...]
    # Why nothing moves, or the numbers every move was decided from.
    summary: str


def _runtimes(loads: list[ProgramLoad]) -> dict[str, tuple[float, bool]]:
    """Program -> (runtime used, measured?)."""
    known = [load.mean_runtime for load in loads if load.mean_runtime and load.mean_runtime > 0]
    fallback = sum(known) / len(known) if known else UNKNOWN_RUNTIME
    return {
        load.name: ((load.mean_runtime, True) if load.mean_runtime and load.mean_runtime > 0
                    else (fallback, False))
        for load in loads
    }


def expected_wait(*, backlog: int, runtime: float, processes: int) -> float:
    return backlog * runtime / max(processes, 1)


def floors(loads: list[ProgramLoad], *, budget: int) -> dict[str, int]:
    """The processes each program keeps whatever the others wait for.

    Its minimum; a program with tasks waiting keeps what it has (within its
    maximum), unless the pools already hold more than the budget (a worker
    restarted at its declared size): then the minimums only.
    """
    kept = {load.name: max(load.minimum, min(load.processes, load.maximum)) if load.has_waited
            else load.minimum for load in loads}
    if sum(kept.values()) > budget:
        return {load.name: load.minimum for load in loads}
    return kept


def targets(loads: list[ProgramLoad], *, budget: int) -> dict[str, int]:
    """Processes per program that make the expected waits equal, within the bounds.

    Water-filling: the spare processes (budget minus the floors) are shared
    in proportion to the waiting work; a program capped (at its maximum, or at
    its backlog) passes the rest on; the remaining integer processes go to the
    largest remainders.  What no backlog claims stays with the programs that
    have it (taken first from those that have the most); what is still spare
    goes one by one to the program with the fewest.
    """
    runtimes = _runtimes(loads)
    work = {load.name: load.backlog * runtimes[load.name][0] for load in loads}
    target = floors(loads, budget=budget)
    spare = budget - sum(target.values())
    cap = {load.name: min(load.maximum, max(target[load.name], load.backlog)) for load in loads}
    open_ = {load.name: load for load in loads if work[load.name] > 0}
    while spare > 0 and open_:
        total = sum(work[name] for name in open_)
        shares = {name: spare * work[name] / total for name in open_}
        capped = [name for name in open_ if target[name] + shares[name] >= cap[name]]
        if capped:
            for name in capped:
                spare -= cap[name] - target[name]
                target[name] = cap[name]
                del open_[name]
            continue
        whole = {name: int(share) for name, share in shares.items()}
        for name, count in whole.items():
            target[name] += count
        spare -= sum(whole.values())
        by_remainder = sorted(open_, key=lambda name: (shares[name] - whole[name], work[name]),
                              reverse=True)
        for name in by_remainder[:spare]:
            target[name] += 1
        spare -= len(by_remainder[:spare])
        break
    # Unclaimed processes stay put: one by one back to the program that
    # keeps the fewest of its own, so what a claim takes comes from the
    # programs that have the most.
    while spare > 0:
        keeping = [load for load in loads
                   if target[load.name] < min(load.processes, load.maximum)]
        if not keeping:
            break
        target[min(keeping, key=lambda load: target[load.name]).name] += 1
        spare -= 1
    while spare > 0:
        room = [load for load in loads if target[load.name] < load.maximum]
        if not room:
            break
        target[min(room, key=lambda load: target[load.name]).name] += 1
        spare -= 1
    return target


def _describe(load: ProgramLoad, runtime: tuple[float, bool]) -> str:
    seconds, measured = runtime
    wait = expected_wait(backlog=load.backlog, runtime=seconds, processes=load.processes)
    held = (f" (keeps its processes: {load.previous_backlog} waiting at the previous reading)"
            if load.previous_backlog and not load.backlog else "")
    return (f"{load.name}: {load.backlog} waiting x {seconds:.2f} s "
            f"{'mean runtime' if measured else 'runtime (none measured, assumed)'} / "
            f"{load.processes} processes = {wait:.1f} s expected wait{held}")


def decide(loads: list[ProgramLoad], *, budget: int, max_shift: int, cooldown_seconds: float,
           now: float, last_move_at: float | None) -> Decision:
    """The moves to make now (possibly none), each with the numbers behind it."""
    if last_move_at is not None and now - last_move_at < cooldown_seconds:
        left = cooldown_seconds - (now - last_move_at)
        return Decision((), f"cooldown: {left:.1f} s until the next decision")
    runtimes = _runtimes(loads)
    wanted = targets(loads, budget=budget)
    numbers = "; ".join(_describe(load, runtimes[load.name]) for load in loads)
    by_name = {load.name: load for load in loads}

    # Removals first: programs above their target (or their maximum) give
    # processes back, the most idle first.
    removable = sorted(
        (load for load in loads if load.processes > wanted[load.name]),
        key=lambda load: expected_wait(backlog=load.backlog, runtime=runtimes[load.name][0],
                                       processes=load.processes),
    )
    after = {load.name: load.processes for load in loads}
    shifts = max_shift
    for load in removable:
        count = min(load.processes - wanted[load.name], shifts)
        after[load.name] -= count
        shifts -= count
    # Additions: within what is free of the budget once the removals are done,
    # to the longest expected wait first, one process at a time.
    free = budget - sum(after.values())
    additions = min(max_shift, max(free, 0))
    while additions:
        candidates = [load for load in loads if after[load.name] < wanted[load.name]]
        if not candidates:
            break
        neediest = max(candidates, key=lambda load: expected_wait(
            backlog=load.backlog, runtime=runtimes[load.name][0], processes=after[load.name]))
        after[neediest.name] += 1
        additions -= 1

    moves = tuple(
        Move(program=name, before=by_name[name].processes, after=count,
             reason=f"target {wanted[name]} of budget {budget} "
                    f"(bounds {by_name[name].minimum}-{by_name[name].maximum}); {numbers}")
        for name, count in after.items() if count != by_name[name].processes
    )
    if not moves:
        return Decision((), f"balanced: targets {wanted}; {numbers}")
    return Decision(moves, numbers)
