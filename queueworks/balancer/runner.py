"""One balancer per host: read, decide (queueworks/balancer/decision.py), move, record.

Runs as the ``balancer`` supervisor program (``manage.py balance``), rendered
only when the topology declares ``balance``: one per host, like Horizon's
supervisor, so each host keeps its own budget and moves only its own pools.
"""

from __future__ import annotations

import logging
import time
import xmlrpc.client
from dataclasses import dataclass, field

from django.utils import timezone

from queueworks.balancer.decision import Decision, Move, ProgramLoad, decide
from queueworks.balancer.pools import PoolError, pool_change, pool_sizes
from queueworks.balancer.processes import live_processes, process_change
from queueworks.balancer.runtimes import RuntimeWindow
from queueworks.balancer.services import balance_decision_record
from queueworks.core.balance_declaration import moves_processes
from queueworks.core.broker_state import queue_counts
from queueworks.core.supervisord_client import Supervisord, SupervisordUnreachable
from queueworks.core.topology import Balance, Topology

logger = logging.getLogger(__name__)

# A grown pool forks its processes as the grow command is handled
# (queueworks/balancer/control.py), and ``inspect stats`` lists the live ones: until
# a grown pool shows its new size (a worker still busy with the command, or
# one that could not fork), the balancer counts it at that size (a stale,
# lower count would grow it twice).  After this long the count is
# believed (the worker restarted, say).  Shrinks are waited for where they
# are made (queueworks/balancer/pools.py).
SETTLE_SECONDS = 30.0


@dataclass
class Balancer:
    app: object
    topology: Topology
    host: str
    window: RuntimeWindow = field(init=False)
    last_move_at: float | None = None
    # Program -> (size it was moved to, when): pools still settling.
    settling: dict = field(default_factory=dict)
    # Program -> ready messages at the previous reading.
    previous_backlogs: dict = field(default_factory=dict)
    # This host's supervisord: it starts and stops a program of processes.
    supervisord: Supervisord | None = None
    _connection: object = None

    def __post_init__(self):
        self.window = RuntimeWindow(self.balance.runtime_window)
        if self.supervisord is None:
            self.supervisord = Supervisord(timeout=10.0)

    @property
    def balance(self) -> Balance:
        return self.topology.balance

    def node(self, program: str) -> str:
        return f"{program}@{self.host}"

    def by_processes(self, program: str) -> bool:
        """Balanced by starting and stopping a group's processes, not by a pool's size."""
        return moves_processes(self.topology.worker_named(program))

    def process_node(self, program: str, number: int) -> str:
        return self.topology.worker_named(program).process_node(number, self.host)

    @property
    def pool_nodes(self) -> list[str]:
        return [self.node(name) for name in self.balance.workers if not self.by_processes(name)]

    @property
    def event_nodes(self) -> dict[str, str]:
        """Node -> the program whose runtimes its task events count toward."""
        nodes = {self.node(name): name for name in self.balance.workers}
        for name in self.balance.workers:
            if self.by_processes(name):
                worker = self.topology.worker_named(name)
                nodes.update({self.process_node(name, number): name
                              for number in range(1, self.topology.process_slots(worker) + 1)})
        return nodes

    @property
    def nodes(self) -> list[str]:
        return list(self.event_nodes)

    def queues_of(self, program: str) -> tuple[str, ...]:
        # Fair sharing's sub-queues hold the queue's backlog too.
        return tuple(self.topology.consumed_queue_names(self.topology.worker_named(program)))

    # -- reading -------------------------------------------------------------
    def _backlogs(self) -> dict[str, int]:
        names = sorted({queue for name in self.balance.workers for queue in self.queues_of(name)})
        try:
            if self._connection is None:
                self._connection = self.app.connection_for_read()
                self._connection.ensure_connection(max_retries=1)
            counts = queue_counts(self._connection, names)
        except Exception:
            self.close()
            raise
        return {name: (count[0] if count else 0) for name, count in counts.items()}

    def settled(self, sizes: dict[str, int], now: float) -> dict[str, int]:
        """Node -> processes, a pool not yet showing the size it was moved to at that size."""
        sizes = dict(sizes)
        for name, (size, moved_at) in list(self.settling.items()):
            node = self.node(name)
            if sizes[node] == size or now - moved_at > SETTLE_SECONDS:
                del self.settling[name]
            else:
                sizes[node] = size
        return sizes

    def loads(self, now: float | None = None) -> tuple[list[ProgramLoad], str]:
        """The programs' loads now; empty with the reason when one cannot be read."""
        now = time.monotonic() if now is None else now
        sizes = pool_sizes(self.app, self.pool_nodes) if self.pool_nodes else {}
        missing = [node for node in self.pool_nodes if node not in sizes]
        if missing:
            return [], f"no pool size from {', '.join(missing)}: nothing moves without it"
        for name in self.balance.workers:
            if self.by_processes(name):
                # supervisord's count is exact at once: no settling.
                try:
                    sizes[self.node(name)] = len(live_processes(self.supervisord, name))
                except (SupervisordUnreachable, xmlrpc.client.Error) as error:
                    # Under systemd, or a supervisord shutting down (SHUTDOWN_STATE).
                    return [], (f"no process count of {name} from supervisord ({error}): "
                                "nothing moves without it")
        sizes = self.settled(sizes, now)
        backlogs = self._backlogs()
        loads = []
        for name in self.balance.workers:
            minimum, maximum = self.balance.bounds(name)
            loads.append(ProgramLoad(
                name=name, processes=sizes[self.node(name)],
                backlog=sum(backlogs.get(queue, 0) for queue in self.queues_of(name)),
                mean_runtime=self.window.mean(name),
                minimum=minimum, maximum=maximum,
                previous_backlog=self.previous_backlogs.get(name, 0)))
        self.previous_backlogs = {load.name: load.backlog for load in loads}
        return loads, ""

    # -- one decision --------------------------------------------------------
    def tick(self, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        decided_at = timezone.now()
        loads, unreadable = self.loads(now)
        if unreadable:
            return Decision((), unreadable)
        decision = decide(loads, budget=self.balance.budget, max_shift=self.balance.max_shift,
                          cooldown_seconds=self.balance.cooldown_seconds, now=now,
                          last_move_at=self.last_move_at)
        if decision.moves:
            self.apply(decision.moves, loads, now, decided_at)
            self.last_move_at = now
        return decision

    def apply(self, moves: tuple[Move, ...], loads: list[ProgramLoad], now: float,
              decided_at) -> None:
        """Removals first; additions only within what the removals really freed."""
        running = {load.name: load.processes for load in loads}
        for move in sorted(moves, key=lambda move: move.after - move.before):
            change = move.after - move.before
            if change > 0:
                free = self.balance.budget - sum(running.values())
                change = min(change, free)
                if change <= 0:
                    self._record(move, running[move.program], running[move.program],
                                 "not grown: a removal it depended on was refused", decided_at)
                    continue
            error = ""
            try:
                if self.by_processes(move.program):
                    moved = process_change(
                        self.app, self.supervisord, move.program, by=change,
                        node_of=lambda number, name=move.program: self.process_node(name, number))
                else:
                    moved = pool_change(self.app, self.node(move.program), by=change)
            except PoolError as refusal:
                moved, error = refusal.moved, str(refusal)
            before = running[move.program]
            running[move.program] += moved if change > 0 else -moved
            if moved and not self.by_processes(move.program):
                self.settling[move.program] = (running[move.program], now)
            self._record(move, before, running[move.program], error, decided_at)

    def _record(self, move: Move, before: int, after: int, error: str, decided_at) -> None:
        logger.info("%s: %d -> %d processes%s. %s", move.program, before, after,
                    f" (refused: {error})" if error else "", move.reason)
        balance_decision_record(host=self.host, program=move.program,
                                queues=self.queues_of(move.program), before=before, after=after,
                                reason=move.reason, error=error, decided_at=decided_at)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._connection = None
