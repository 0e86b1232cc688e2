"""The topology framework: what a queue, a worker program, a route and a beat
schedule are, and everything derived from a declaration of them.

The declaration itself (the one file a user edits) is ``projectname/topology.py``;
it builds ``TOPOLOGY`` from the classes here.  Derived from it:

* Celery's ``task_queues`` / ``task_routes`` / ``task_annotations`` /
  ``beat_schedule`` (``projectname/settings.py``),
* the supervisor and systemd files in ``deploy/`` (``queueworks/core/supervisor.py``,
  ``queueworks/core/systemd.py``; ``manage.py apply_topology`` renders and applies them),
* the system checks that refuse a topology that would strand tasks
  (``queueworks/core/checks.py``),
* the human-readable overview (``manage.py topology``),
* the per-host process balancer's program and limits (``Balance``,
  ``queueworks/balancer``), only when the declaration has one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from celery.schedules import crontab
from kombu import Exchange
from kombu import Queue as KombuQueue

from queueworks.core.balance_declaration import Balance, moves_processes
from queueworks.core.queue_limits import (  # noqa: F401 - declared here for every importer
    DEAD_LETTER_DELIVERY_LIMIT,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DELIVERY_LIMIT,
    QUORUM_DELIVERY_LIMIT,
    QUORUM_HIGH_PRIORITY,
)
from queueworks.core.time_limits import refuse_incoherent_route_limits, route_time_limits
from queueworks.limits.declaration import ConcurrencyLimit, FairShare, RateLimit, Unique

DEFAULT_QUEUE = "celery"
# "classic" (one node) or "quorum" (replicated across a RabbitMQ cluster).
QUEUE_TYPES = ("classic", "quorum")
# Worker.cpu_policy values (queueworks/core/cpu_policy.py maps them to Linux's).
CPU_POLICIES = ("normal", "batch", "idle")

# Fair sharing's sub-queues are "<queue>.fair.<bucket>" (Queue.fair_buckets).
FAIR_SEPARATOR = ".fair."


@dataclass(frozen=True)
class Queue:
    """A durable RabbitMQ queue bound to a direct exchange of the same name."""

    name: str
    purpose: str
    # RabbitMQ priorities (x-max-priority): 0..max_priority, higher runs first.
    # On a quorum queue (RabbitMQ 4.x): two levels, see QUORUM_HIGH_PRIORITY.
    max_priority: int | None = None
    # Seconds the oldest waiting message may wait before operators are alerted.
    wait_alert_seconds: int | None = None
    # "classic" (one node) or "quorum" (replicated across a RabbitMQ cluster);
    # None: the deployment's QUEUEWORKS_TASK_QUEUE_TYPE.
    queue_type: str | None = None
    # Rejected / undeliverable messages go to DEAD_LETTER_EXCHANGE.
    dead_letter: bool = True
    # Quorum queues only: deliveries before the broker dead-letters a message.
    delivery_limit: int = QUORUM_DELIVERY_LIMIT
    # Fair sharing (queueworks/limits/fair.py): calls of a route declaring
    # FairShare(key) go to one of this many sub-queues ("<name>.fair.<i>",
    # picked by a hash of the key), which the queue's workers consume beside
    # it, so callers with different keys take turns.  0: none.
    fair_buckets: int = 0

    def fair_queue_names(self) -> tuple[str, ...]:
        """The sub-queues of fair sharing, declared like this queue."""
        return tuple(f"{self.name}{FAIR_SEPARATOR}{i}" for i in range(self.fair_buckets))

    @property
    def kind(self) -> str:
        """The type the queue is declared as: ``queue_type``, else classic."""
        return self.queue_type or "classic"

    def arguments(self) -> dict[str, object]:
        """The x-arguments the queue is declared with (all declarers must agree)."""
        arguments: dict[str, object] = {}
        if self.kind != "classic":
            arguments["x-queue-type"] = self.kind
        if self.max_priority is not None and self.kind == "classic":
            # Quorum queues refuse x-max-priority: their two levels need no argument.
            arguments["x-max-priority"] = self.max_priority
        if self.dead_letter:
            # No x-dead-letter-routing-key: the message keeps its routing key,
            # and x-death names the queue it died in (used to re-queue it).
            arguments["x-dead-letter-exchange"] = DEAD_LETTER_EXCHANGE
        if self.kind == "quorum":
            arguments["x-delivery-limit"] = self.delivery_limit
        return arguments

    def __post_init__(self):
        if self.queue_type is not None and self.queue_type not in QUEUE_TYPES:
            raise ValueError(f"Queue {self.name!r}: queue_type must be one of {QUEUE_TYPES}.")
        if self.queue_type == "quorum" and not self.dead_letter:
            raise ValueError(
                f"Queue {self.name!r}: a quorum queue drops a message past its delivery limit "
                "unless it dead-letters; keep dead_letter=True or declare it classic.")
        if self.delivery_limit < 1:
            raise ValueError(f"Queue {self.name!r}: delivery_limit must be at least 1.")
        if self.fair_buckets and not 2 <= self.fair_buckets <= 64:
            raise ValueError(f"Queue {self.name!r}: fair_buckets must be 0 or 2-64.")

    @property
    def exchange_type(self) -> str:
        # Quorum queues get ETA/countdown tasks through Celery's native delayed
        # delivery, which only works through topic exchanges (with a direct one
        # the worker would hold the message until its ETA).  Routing is the
        # same: the routing key is the queue name.
        return "topic" if self.kind == "quorum" else "direct"

    def to_kombu(self) -> KombuQueue:
        exchange = Exchange(self.name, type=self.exchange_type, durable=True)
        return KombuQueue(
            self.name, exchange, routing_key=self.name, durable=True,
            queue_arguments=self.arguments() or None,
        )


@dataclass(frozen=True)
class Worker:
    """A supervisor program running ``celery worker -Q <queues>``.

    ``time_limit`` / ``soft_time_limit`` are the worker-wide defaults; a route
    may tighten them per task.  ``stopwaitsecs`` for supervisor is derived from
    the longest hard limit so that a warm shutdown can let the longest task
    finish before supervisor escalates to SIGKILL.
    """

    name: str
    queues: tuple[str, ...]
    # Celery's prefork pool: one process per concurrent task, hard time limits.
    pool: str = "prefork"
    # Pool processes: tasks run at the same time by this program.
    concurrency: int = 2
    # Identical workers run as this one program, each its own process and
    # Celery node ("<name>_<n>@<host>"): for a single-process pool (one per
    # core), what a prefork pool's concurrency is.  A supervisor program of
    # ``processes`` processes (numprocs), or a systemd template unit; the
    # balancer starts and stops them one by one (docs/balancer.md).
    processes: int = 1
    # Messages held per process: 1, as routes ack late (a held message waits behind a running task).
    prefetch_multiplier: int = 1
    # Messages prefetched on top of concurrency x prefetch_multiplier, for the
    # whole worker (queueworks/core/prefetch.py): keeps pool processes busy under
    # acks late while a priority backlog stays in the broker.
    prefetch_headroom: int = 0
    # Recycle by memory, not count: 0 = never after N tasks (each such recycle stalls a task 1-3 s).
    max_tasks_per_child: int = 0
    # KiB of resident memory after which a pool process is replaced (a leak costs a restart).
    max_memory_per_child: int | None = 200_000
    # (max, min) pool processes; when set it replaces a fixed concurrency.
    autoscale: tuple[int, int] | None = None
    # Seconds an autoscaled pool stays grown after its last scale-up or task
    # (Celery's AUTOSCALE_KEEPALIVE, default 30; checked every that many
    # seconds, so the pool shrinks 1-2x this long after the backlog is done).
    autoscale_keepalive: int | None = None
    # Seconds before SoftTimeLimitExceeded is raised in the task (it may clean up).
    soft_time_limit: int = 60
    # Seconds before the pool process running the task is killed (the task fails).
    time_limit: int = 90
    # Task events (task-received/-started/-succeeded) for Flower and /ops/:
    # three extra publishes per task.  Workers without them still send
    # heartbeats, so Flower and `inspect` see them.
    task_events: bool = True
    # With task_events=False: seconds task events stay on after a listener
    # (Flower, every 5 s) last asked for them; 0: off for good
    # (queueworks/core/events.py).
    task_events_lease: int = 0
    # Celery's loggers (INFO: two lines per task, received and succeeded).
    log_level: str = "INFO"
    # Linux CPU scheduling policy of the program's processes: "normal",
    # "batch" (a fair share, but never preempts a running process when it
    # wakes up) or "idle" (runs only when nothing else wants the core: two
    # busy processes of normal priority took a probe from 0.2 s to seconds).
    # "normal" by default: user-facing work keeps its share on a busy host.
    # See queueworks/core/cpu_policy.py and docs/performance-main-lane.md.
    cpu_policy: str = "normal"

    def __post_init__(self):
        if self.cpu_policy not in CPU_POLICIES:
            raise ValueError(f"Worker {self.name!r}: cpu_policy must be one of {CPU_POLICIES}.")
        if not 0 <= self.task_events_lease <= 3600:
            raise ValueError(f"Worker {self.name!r}: task_events_lease must be 0-3600 s.")
        if not 0 <= self.prefetch_headroom <= 100:
            raise ValueError(f"Worker {self.name!r}: prefetch_headroom must be 0-100.")
        if not 1 <= self.processes <= 64:
            raise ValueError(f"Worker {self.name!r}: processes must be 1-64.")

    @property
    def node_name(self) -> str:
        # %h is expanded by Celery to the host name, so inspection shows where
        # each worker runs ("main_worker@web-1").
        return f"{self.name}@%h"

    def process_node(self, number: int, host: str) -> str:
        """The node name of process ``number`` (1-based) of a program of processes."""
        return f"{self.name}_{number}@{host}"


@dataclass(frozen=True)
class Route:
    """Where one task (by dotted name) goes, and how it is acknowledged."""

    task: str
    queue: str
    # Ack after the task ran, so a killed worker's task is redelivered (the
    # default: every task's effects must be idempotent, see queueworks/reliability).
    # acks_late=False acks on receipt: a crash loses the task, never repeats it.
    acks_late: bool = True
    # Seconds; either overrides the worker's.  A hard limit at or below the
    # worker's soft limit brings a soft limit below it (queueworks/core/time_limits.py).
    soft_time_limit: int | None = None
    time_limit: int | None = None
    # Deliveries (execution starts) before dead-lettering; None: DELIVERY_LIMIT.
    max_deliveries: int | None = None
    # True: fire-and-forget, no result row is written (failures still are:
    # CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED); None: the task's own setting.
    # The Task API reads results, so its tasks keep them (a check refuses it).
    ignore_result: bool | None = None
    # Across every worker on every host (queueworks/limits, docs/limits.md).
    rate_limit: RateLimit | None = None
    concurrency_limit: ConcurrencyLimit | None = None
    fair_share: FairShare | None = None
    unique: Unique | None = None

    def __post_init__(self):
        refuse_incoherent_route_limits(self)


@dataclass(frozen=True)
class Schedule:
    """A beat entry; ``queue`` is explicit so the job never lands elsewhere."""

    name: str
    task: str
    schedule: crontab | timedelta
    queue: str
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    queues: tuple[Queue, ...]
    workers: tuple[Worker, ...]
    routes: tuple[Route, ...]
    schedules: tuple[Schedule, ...]
    default_queue: str = DEFAULT_QUEUE
    # Per-host process balancing across some worker programs (off: None).
    balance: Balance | None = None

    def with_added(self, *, queues=(), workers=(), routes=(), schedules=()) -> Topology:
        """This topology plus more declarations (the README's recipe appends this way)."""
        return replace(self, queues=self.queues + tuple(queues), workers=self.workers + tuple(workers),
                       routes=self.routes + tuple(routes), schedules=self.schedules + tuple(schedules))

    # -- lookups -----------------------------------------------------------
    def queue_names(self) -> list[str]:
        return [queue.name for queue in self.queues]

    def declared_queue_names(self) -> list[str]:
        """Every queue declared on the broker: the topology's and their fair sub-queues."""
        return [name for queue in self.queues for name in (queue.name, *queue.fair_queue_names())]

    def route_for(self, task_name: str) -> Route | None:
        return next((route for route in self.routes if route.task == task_name), None)

    def queue_for(self, task_name: str) -> str:
        route = self.route_for(task_name)
        return route.queue if route else self.default_queue

    def consumed_queue_names(self, worker: Worker) -> list[str]:
        """What ``worker`` consumes: its queues and their fair-sharing sub-queues."""
        declared = {queue.name: queue for queue in self.queues}
        names = []
        for name in worker.queues:
            names.append(name)
            if name in declared:
                names += declared[name].fair_queue_names()
        return names

    def consumers_of(self, queue_name: str) -> list[Worker]:
        # A fair sub-queue is consumed by its queue's workers (migrate_queues pauses them).
        queue_name = next((queue.name for queue in self.queues
                           if queue_name in queue.fair_queue_names()), queue_name)
        return [worker for worker in self.workers if queue_name in worker.queues]

    def worker_named(self, name: str) -> Worker:
        return next(worker for worker in self.workers if worker.name == name)

    def process_slots(self, worker: Worker) -> int:
        """Processes the process manager declares for ``worker``: its
        ``processes``, or a balanced single-process program's maximum when
        higher (the ones above ``processes`` start only when the balancer
        starts them)."""
        if self.balance is None or worker.name not in self.balance.workers \
                or not moves_processes(worker):
            return worker.processes
        return max(worker.processes, self.balance.bounds(worker.name)[1])

    def program_of_node(self, node: str) -> str:
        """The worker program a Celery node ("<name>@<host>") belongs to: a
        declared program's name, or "<program>_<n>" for process ``n`` of a
        program of processes; anything else, the name before "@"."""
        name = node.split("@", 1)[0]
        declared = {worker.name: worker for worker in self.workers}
        if name in declared:
            return name
        program, _, number = name.rpartition("_")
        worker = declared.get(program)
        if worker is not None and number.isdigit() and 1 <= int(number) <= self.process_slots(worker):
            return program
        return name

    def longest_time_limit(self, worker: Worker) -> int:
        limits = [worker.time_limit]
        for queue_name in worker.queues:
            limits += [
                route.time_limit
                for route in self.routes
                if route.queue == queue_name and route.time_limit
            ]
        return max(limits)

    # -- Celery settings derived from the declaration ---------------------
    def celery_queues(self) -> tuple[KombuQueue, ...]:
        # A fair queue's sub-queues are declared like it (type, priorities,
        # dead letters), each with its own exchange.
        return tuple(declared.to_kombu() for queue in self.queues
                     for declared in (queue, *(replace(queue, name=name, fair_buckets=0)
                                               for name in queue.fair_queue_names())))

    def with_queue_type(self, queue_type: str) -> Topology:
        """The same topology with every queue that does not choose its own
        type declared as ``queue_type``.

        ``quorum`` (settings: TASK_QUEUE_TYPE=quorum, the production default)
        replicates each queue on a cluster's nodes, so it survives losing a
        minority of them.  ``max_priority`` stays: RabbitMQ 4.x quorum queues
        have two priority levels (QUORUM_HIGH_PRIORITY); 3.x ones ignore it.
        """
        return replace(self, queues=tuple(
            queue if queue.queue_type is not None or (queue_type == "quorum" and not queue.dead_letter)
            else replace(queue, queue_type=queue_type)
            for queue in self.queues
        ))

    def dead_letter_queue(self, queue_type: str = "classic") -> KombuQueue:
        """The one queue every work queue dead-letters into (fanout exchange).

        ``queue_type`` follows queueworks_settings.TASK_QUEUE_TYPE: on a cluster the dead
        letters must survive a node too.
        """
        exchange = Exchange(DEAD_LETTER_EXCHANGE, type="fanout", durable=True)
        arguments = None
        if queue_type == "quorum":
            arguments = {"x-queue-type": queue_type,
                         "x-delivery-limit": DEAD_LETTER_DELIVERY_LIMIT}
        elif queue_type != "classic":
            arguments = {"x-queue-type": queue_type}
        return KombuQueue(DEAD_LETTER_QUEUE, exchange, routing_key="#", durable=True,
                          queue_arguments=arguments)

    def celery_routes(self) -> dict[str, dict[str, str]]:
        return {
            # The queue only: its routing key follows from it, also when a
            # caller overrides the queue.  A route's own routing key would
            # stick to the override, and on the topic exchanges of quorum
            # queues such a message is routed nowhere and dropped.
            route.task: {"queue": route.queue}
            for route in self.routes
        }

    def celery_annotations(self) -> dict[str, dict[str, object]]:
        annotations: dict[str, dict[str, object]] = {}
        for route in self.routes:
            # Explicit either way: the global default (task_acks_late) is True.
            options: dict[str, object] = {
                "acks_late": route.acks_late,
                "reject_on_worker_lost": route.acks_late,
            }
            if route.max_deliveries:
                options["max_deliveries"] = route.max_deliveries
            if route.ignore_result is not None:
                options["ignore_result"] = route.ignore_result
            soft, hard = route_time_limits(self, route)
            if soft:
                options["soft_time_limit"] = soft
            if hard:
                options["time_limit"] = hard
            if options:
                annotations[route.task] = options
        return annotations

    def celery_beat_schedule(self) -> dict[str, dict[str, object]]:
        return {
            entry.name: {
                "task": entry.task,
                "schedule": entry.schedule,
                "kwargs": dict(entry.kwargs),
                "options": {"queue": entry.queue, "routing_key": entry.queue},
            }
            for entry in self.schedules
        }
