"""The whole task topology, declared once.

Every queue, every worker program that consumes queues, where every task is
routed and every beat schedule lives here.  Everything that must agree with it
is *derived* from it, never written twice:

* Celery's ``task_queues`` / ``task_routes`` / ``task_annotations`` /
  ``beat_schedule`` (see ``projectname/settings.py``),
* the supervisor program files in ``deploy/conf.d/``
  (``python manage.py render_supervisor``),
* the system check that refuses a topology that would strand tasks
  (``python manage.py check``),
* the human-readable overview (``python manage.py topology``).

To add a queue: declare a ``Queue`` below, give it a consumer in ``WORKERS``,
route tasks to it in ``ROUTES``, then run ``python manage.py render_supervisor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from celery.schedules import crontab
from kombu import Exchange
from kombu import Queue as KombuQueue

DEFAULT_QUEUE = "celery"
# "classic" (one node) or "quorum" (replicated across a RabbitMQ cluster).
QUEUE_TYPES = ("classic", "quorum")
# Worker.cpu_policy values (apps/core/cpu_policy.py maps them to Linux's).
CPU_POLICIES = ("normal", "batch", "idle")

# Dead letters (see apps/reliability): every work queue dead-letters rejected
# messages to this fanout exchange, which feeds one durable queue.  RabbitMQ
# records why and from where in the message's x-death header.
DEAD_LETTER_EXCHANGE = "dead_letter"
DEAD_LETTER_QUEUE = "dead_letter"
# How many times a message may START executing before it is dead-lettered
# instead (a task that kills its worker every time must not loop forever).
# Classic queues have no x-delivery-limit, so apps/reliability counts
# deliveries per task id in the database.  A Route may set its own limit.
DELIVERY_LIMIT = 5


@dataclass(frozen=True)
class Queue:
    """A durable RabbitMQ queue bound to a direct exchange of the same name."""

    name: str
    purpose: str
    # RabbitMQ priorities (x-max-priority): 0..max_priority, higher runs first.
    max_priority: int | None = None
    # Seconds the oldest waiting message may wait before operators are alerted.
    wait_alert_seconds: int | None = None
    # "classic" or "quorum" (replicated across a RabbitMQ cluster).
    queue_type: str = "classic"
    # Rejected / undeliverable messages go to DEAD_LETTER_EXCHANGE.
    dead_letter: bool = True

    def arguments(self) -> dict[str, object]:
        """The x-arguments the queue is declared with (all declarers must agree)."""
        arguments: dict[str, object] = {}
        if self.queue_type != "classic":
            arguments["x-queue-type"] = self.queue_type
        if self.max_priority is not None:
            arguments["x-max-priority"] = self.max_priority
        if self.dead_letter:
            # No x-dead-letter-routing-key: the message keeps its routing key,
            # and x-death names the queue it died in (used to re-queue it).
            arguments["x-dead-letter-exchange"] = DEAD_LETTER_EXCHANGE
        return arguments

    def __post_init__(self):
        if self.queue_type not in QUEUE_TYPES:
            raise ValueError(f"Queue {self.name!r}: queue_type must be one of {QUEUE_TYPES}.")
        if self.queue_type == "quorum" and self.max_priority is not None:
            raise ValueError(
                f"Queue {self.name!r}: RabbitMQ 3.10 quorum queues have no priorities "
                "(x-max-priority); keep it classic or drop max_priority."
            )

    @property
    def exchange_type(self) -> str:
        # Quorum queues get ETA/countdown tasks through Celery's native delayed
        # delivery, which only works through topic exchanges (with a direct one
        # the worker would hold the message until its ETA).  Routing is the
        # same: the routing key is the queue name.
        return "topic" if self.queue_type == "quorum" else "direct"

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
    pool: str = "prefork"
    concurrency: int = 2
    prefetch_multiplier: int = 4
    # Messages prefetched on top of concurrency x prefetch_multiplier, for the
    # whole worker (apps/core/prefetch.py): keeps pool processes busy under
    # acks late while a priority backlog stays in the broker.
    prefetch_headroom: int = 0
    # Tasks after which a pool process is replaced; 0: never (the memory
    # limit still replaces a leaking one).  A replacement costs one task up
    # to seconds: the parent can hand the next message to the exiting child,
    # which takes it along until the parent sees the child gone.
    max_tasks_per_child: int = 1000
    # KiB of resident memory after which a pool process is replaced.
    max_memory_per_child: int | None = None
    # (max, min) pool processes; when set it replaces a fixed concurrency.
    autoscale: tuple[int, int] | None = None
    # Seconds an autoscaled pool stays grown after its last scale-up or task
    # (Celery's AUTOSCALE_KEEPALIVE, default 30; checked every that many
    # seconds, so the pool shrinks 1-2x this long after the backlog is done).
    autoscale_keepalive: int | None = None
    soft_time_limit: int = 60
    time_limit: int = 90
    # Task events (task-received/-started/-succeeded) for Flower and /ops/:
    # three extra publishes per task.  Workers without them still send
    # heartbeats, so Flower and `inspect` see them.
    task_events: bool = True
    # With task_events=False: seconds task events stay on after a listener
    # (Flower, every 5 s) last asked for them; 0: off for good
    # (apps/core/events.py).
    task_events_lease: int = 0
    # Celery's loggers (INFO: two lines per task, received and succeeded).
    log_level: str = "INFO"
    # Linux CPU scheduling policy of the program's processes: "normal",
    # "batch" (a fair share, but never preempts a running process when it
    # wakes up) or "idle" (runs only when nothing else wants the core: two
    # busy processes of normal priority took a probe from 0.2 s to seconds).
    # "normal" by default: user-facing work keeps its share on a busy host.
    # See apps/core/cpu_policy.py and docs/performance-main-lane.md.
    cpu_policy: str = "normal"

    def __post_init__(self):
        if self.cpu_policy not in CPU_POLICIES:
            raise ValueError(f"Worker {self.name!r}: cpu_policy must be one of {CPU_POLICIES}.")
        if not 0 <= self.task_events_lease <= 3600:
            raise ValueError(f"Worker {self.name!r}: task_events_lease must be 0-3600 s.")
        if not 0 <= self.prefetch_headroom <= 100:
            raise ValueError(f"Worker {self.name!r}: prefetch_headroom must be 0-100.")

    @property
    def node_name(self) -> str:
        # %h is expanded by Celery to the host name, so inspection shows where
        # each worker runs ("main_worker@web-1").
        return f"{self.name}@%h"


@dataclass(frozen=True)
class Route:
    """Where one task (by dotted name) goes, and how it is acknowledged."""

    task: str
    queue: str
    # Ack after the task ran, so a killed worker's task is redelivered (the
    # default: every task's effects must be idempotent, see apps/reliability).
    # acks_late=False acks on receipt: a crash loses the task, never repeats it.
    acks_late: bool = True
    soft_time_limit: int | None = None
    time_limit: int | None = None
    # Deliveries (execution starts) before dead-lettering; None: DELIVERY_LIMIT.
    max_deliveries: int | None = None
    # True: fire-and-forget, no result row is written (failures still are:
    # CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED); None: the task's own setting.
    # The Task API reads results, so its tasks keep them (a check refuses it).
    ignore_result: bool | None = None


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

    # -- lookups -----------------------------------------------------------
    def queue_names(self) -> list[str]:
        return [queue.name for queue in self.queues]

    def route_for(self, task_name: str) -> Route | None:
        return next((route for route in self.routes if route.task == task_name), None)

    def queue_for(self, task_name: str) -> str:
        route = self.route_for(task_name)
        return route.queue if route else self.default_queue

    def consumers_of(self, queue_name: str) -> list[Worker]:
        return [worker for worker in self.workers if queue_name in worker.queues]

    def worker_named(self, name: str) -> Worker:
        return next(worker for worker in self.workers if worker.name == name)

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
        return tuple(queue.to_kombu() for queue in self.queues)

    def with_queue_type(self, queue_type: str) -> Topology:
        """The same topology with every queue declared as ``queue_type``.

        ``quorum`` is for a RabbitMQ cluster (settings: TASK_QUEUE_TYPE=quorum):
        each queue is replicated on the cluster's nodes and survives losing a
        minority of them.  RabbitMQ 3.10 quorum queues have no priorities, so
        ``max_priority`` is dropped there: messages run in arrival order.
        """
        return replace(self, queues=tuple(
            replace(queue, queue_type=queue_type,
                    max_priority=None if queue_type == "quorum" else queue.max_priority)
            for queue in self.queues
        ))

    def dead_letter_queue(self, queue_type: str = "classic") -> KombuQueue:
        """The one queue every work queue dead-letters into (fanout exchange).

        ``queue_type`` follows settings.TASK_QUEUE_TYPE: on a cluster the dead
        letters must survive a node too.
        """
        exchange = Exchange(DEAD_LETTER_EXCHANGE, type="fanout", durable=True)
        return KombuQueue(
            DEAD_LETTER_QUEUE, exchange, routing_key="#", durable=True,
            queue_arguments={"x-queue-type": queue_type} if queue_type != "classic" else None,
        )

    def celery_routes(self) -> dict[str, dict[str, str]]:
        return {
            route.task: {"queue": route.queue, "routing_key": route.queue}
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
            if route.soft_time_limit:
                options["soft_time_limit"] = route.soft_time_limit
            if route.time_limit:
                options["time_limit"] = route.time_limit
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


# The bulk lane's pool (apps/dispatch/pool.py); a dotted path is rendered as
# Celery's `--pool=custom` with CELERY_CUSTOM_WORKER_POOL.
BULK_POOL = "apps.dispatch.pool:SoloPool"

NOTIFICATIONS = "apps.notifications.tasks"
REPORTS = "apps.reports.tasks"
CORE = "apps.core.tasks"
DOCTOR = "apps.doctor.tasks"
# beat sends a heartbeat this often; `manage.py doctor` calls beat dead after 4 missed.
BEAT_HEARTBEAT_SECONDS = 15
RELIABILITY = "apps.reliability.tasks"

TOPOLOGY = Topology(
    queues=(
        Queue(DEFAULT_QUEUE, "Anything without an explicit route."),
        # Priorities 0..9 on RabbitMQ, 9 runs first (x-max-priority=9).  A
        # message without a priority gets CELERY_TASK_DEFAULT_PRIORITY.
        Queue("main_worker", "Quick, user-facing work: notifications, e-mail.",
              max_priority=9, wait_alert_seconds=60),
        Queue("heavy", "Long-running work: reports over date ranges.",
              max_priority=9, wait_alert_seconds=900),
        # No priorities: a plain classic queue costs RabbitMQ less per message.
        Queue("bulk", "High-volume short tasks: many at a time, each quick "
              "(fan-out, imports, the throughput benchmark).", wait_alert_seconds=60),
    ),
    workers=(
        Worker(
            name="main_worker",
            queues=("main_worker", DEFAULT_QUEUE),
            concurrency=2,
            # Prefetch 1: a priority-9 message can only overtake what is still
            # in the broker, so the worker must not hoard a backlog locally.
            prefetch_multiplier=1,
            # ...plus one message ready for the first process that frees up:
            # without it each process idles a broker round trip per task.
            prefetch_headroom=1,
            # Task events only while Flower runs: three publishes per task.
            task_events=False,
            task_events_lease=30,
            # Recycled by memory only: a recycle by task count held one task
            # per 1,000 for 1.2-3.6 s (bench/latency.py: max 2.7 s).
            max_tasks_per_child=0,
            max_memory_per_child=200_000,
            soft_time_limit=60,
            time_limit=90,
        ),
        # The bulk lane: one process per core (two programs on this 2-core
        # box; add more on bigger hosts), each running tasks in the process
        # that receives them (apps/dispatch/pool.py: the solo pool, keeping
        # time and memory limits) and through the lean path
        # (apps/dispatch/lean.py: coalesced acks, still acks late).  No task
        # events and WARNING logs: at thousands of tasks per second those
        # cost more than the tasks.  See the README, Performance.
        *(
            Worker(
                name=f"bulk_worker_{number}",
                queues=("bulk",),
                pool=BULK_POOL,
                concurrency=1,
                # With acks late nothing is lost by a deep prefetch; 128
                # keeps the process busy while acks go back in batches.
                prefetch_multiplier=128,
                max_tasks_per_child=0,
                max_memory_per_child=250_000,
                soft_time_limit=30,
                time_limit=60,
                task_events=False,
                log_level="WARNING",
                # Never preempts web requests on wake-up, still a fair share.
                cpu_policy="batch",
            )
            for number in (1, 2)
        ),
        Worker(
            name="heavy_worker",
            queues=("heavy",),
            concurrency=1,
            # Grows to 3 pool processes under a backlog, back to 1 when idle
            # (after Celery's keepalive, AUTOSCALE_KEEPALIVE, default 30 s).
            autoscale=(3, 1),
            # Growing takes under a second; an idle grown process holds up to
            # max_memory_per_child, so give the memory back soon.
            autoscale_keepalive=10,
            # A long task must not sit on prefetched messages that another
            # worker process could start now.
            prefetch_multiplier=1,
            max_tasks_per_child=50,
            max_memory_per_child=500_000,
            soft_time_limit=1500,
            time_limit=1800,
        ),
    ),
    routes=(
        Route(f"{NOTIFICATIONS}.send_notification", "main_worker", acks_late=True),
        Route(f"{NOTIFICATIONS}.send_office_hours_reminders", "main_worker", acks_late=True,
              ignore_result=True),
        Route(f"{REPORTS}.build_period_report", "heavy", acks_late=True),
        Route(f"{REPORTS}.build_daily_report", "heavy", acks_late=True),
        Route(f"{REPORTS}.build_weekly_report", "heavy", acks_late=True),
        Route(f"{CORE}.probe", "main_worker"),
        Route(f"{CORE}.heavy_probe", "heavy", acks_late=True),
        # Task API (apps/taskapi): diagnostic task operators can start; cleanup.
        Route("apps.taskapi.tasks.diagnose", "main_worker"),
        # Celery's own result cleanup (beat installs it when result_expires is set).
        Route("celery.backend_cleanup", "main_worker", ignore_result=True),
        # The throughput benchmark's unit of work (bench/throughput.py).
        Route("apps.dispatch.tasks.noop", "bulk", acks_late=True),
        Route(f"{DOCTOR}.beat_heartbeat", "main_worker"),
        # Reliability: delayed dispatch of long countdowns, and the tasks the
        # fault-injection harness (bench/faults.py) runs.
        Route(f"{RELIABILITY}.dispatch_delayed_tasks", "main_worker", ignore_result=True),
        Route(f"{RELIABILITY}.fault_effect", "main_worker"),
        Route(f"{RELIABILITY}.fault_effect_heavy", "heavy"),
        Route(f"{RELIABILITY}.fault_flaky", "main_worker"),
        Route(f"{RELIABILITY}.fault_sleep", "main_worker", soft_time_limit=2, time_limit=5),
        Route(f"{RELIABILITY}.fault_crash", "main_worker", max_deliveries=3),
    ),
    schedules=(
        Schedule(
            name="beat-heartbeat",
            task=f"{DOCTOR}.beat_heartbeat",
            # Proves beat ticks and its messages are consumed (manage.py doctor).
            # It stores no result, so it shares a queue with entries that do.
            schedule=timedelta(seconds=BEAT_HEARTBEAT_SECONDS),
            queue="main_worker",
        ),
        Schedule(
            name="office-hours-reminders",
            task=f"{NOTIFICATIONS}.send_office_hours_reminders",
            # On the hour, 08:00-17:00, Monday to Friday, in CELERY_TIMEZONE.
            schedule=crontab(minute=0, hour="8-17", day_of_week="mon-fri"),
            queue="main_worker",
        ),
        Schedule(
            name="reliability-dispatch-delayed",
            # Publishes tasks whose long countdown/ETA is now close (see
            # apps/reliability: RabbitMQ's consumer_timeout).
            task=f"{RELIABILITY}.dispatch_delayed_tasks",
            schedule=crontab(minute="*"),
            queue="main_worker",
        ),
        Schedule(
            name="daily-report",
            task=f"{REPORTS}.build_daily_report",
            schedule=crontab(minute=30, hour=6),
            queue="heavy",
        ),
        Schedule(
            name="weekly-report",
            task=f"{REPORTS}.build_weekly_report",
            schedule=crontab(minute=0, hour=7, day_of_week="mon"),
            queue="heavy",
        ),
        Schedule(
            # Exactly the entry beat adds by itself when result_expires is set
            # (both schedulers), declared so it is visible and on a consumed
            # queue: deletes results older than result_expires, and the Task
            # API's records with them (apps/taskapi/signals.py).
            name="celery.backend_cleanup",
            task="celery.backend_cleanup",
            schedule=crontab(minute=0, hour=4),
            queue="main_worker",
        ),
    ),
)
