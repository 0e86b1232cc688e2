"""The whole task topology, declared once: every queue, every worker program
that consumes queues, where every task is routed and every beat schedule.

This is the file to edit.  What the classes mean and what is derived from them
(Celery's settings, the supervisor and systemd files, the system checks) lives
in ``queueworks/core/topology.py``.  After a change, ``python manage.py apply_topology``
renders the deploy files and restarts exactly the programs that changed (see
the README, "Adding a task on its own queue").
"""

from __future__ import annotations

import os
from dataclasses import replace

from celery.schedules import crontab

from queueworks.core.builtin import builtin_routes, builtin_schedules
from queueworks.core.topology import (  # noqa: F401  (re-exported: import them from here)
    CPU_POLICIES,
    Balance,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DEFAULT_QUEUE,
    DELIVERY_LIMIT,
    QUEUE_TYPES,
    Queue,
    Route,
    Schedule,
    Topology,
    Unique,
    Worker,
)
from queueworks.limits.declaration import ConcurrencyLimit, RateLimit

# The bulk lane's pool (queueworks/dispatch/pool.py); a dotted path is rendered as
# Celery's `--pool=custom` with CELERY_CUSTOM_WORKER_POOL.
BULK_POOL = "queueworks.dispatch.pool:SoloPool"

NOTIFICATIONS = "apps.notifications.tasks"
REPORTS = "apps.reports.tasks"

PRODUCTION_TOPOLOGY = Topology(
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
            # Prefetch 1 (the default) matters twice here: a priority-9 message
            # can only overtake what is still in the broker.
            prefetch_multiplier=1,
            # ...plus two messages for the whole worker, ready for the first
            # process that frees up: without them each process idles a broker
            # round trip per task.  Two, not more: a priority-9 message can be
            # overtaken by at most concurrency + headroom messages, and the
            # target allows 9 of a 100-message backlog; 4 and 6 drained no
            # faster (docs/performance-main-lane.md).
            prefetch_headroom=2,
            # Task events only while Flower runs: three publishes per task.
            task_events=False,
            task_events_lease=30,
            soft_time_limit=60,
            time_limit=90,
        ),
        # The bulk lane: one process per core (two programs on this 2-core
        # box; add more on bigger hosts), each running tasks in the process
        # that receives them (queueworks/dispatch/pool.py: the solo pool, keeping
        # time and memory limits) and through the lean path
        # (queueworks/dispatch/lean.py: coalesced acks, still acks late).  No task
        # events and WARNING logs: at thousands of tasks per second those
        # cost more than the tasks.  See docs/performance.md.
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
            # Its tasks run for minutes, so a recycle's seconds do not show;
            # a fresh process every 50 reports returns what a report leaked.
            max_tasks_per_child=50,
            max_memory_per_child=500_000,
            soft_time_limit=1500,
            time_limit=1800,
        ),
    ),
    routes=(
        # The package's own tasks (outbox sweep, heartbeat, long delays, result
        # cleanup, the probe).  Alerts ride no queue: the `alerts` program
        # evaluates them, whatever waits on any lane and whichever worker is down.
        *builtin_routes(queue="main_worker"),
        Route(f"{NOTIFICATIONS}.send_notification", "main_worker", acks_late=True),
        Route(f"{NOTIFICATIONS}.send_office_hours_reminders", "main_worker", acks_late=True,
              ignore_result=True),
        Route(f"{REPORTS}.build_period_report", "heavy", acks_late=True),
        Route(f"{REPORTS}.build_daily_report", "heavy", acks_late=True),
        Route(f"{REPORTS}.build_weekly_report", "heavy", acks_late=True),
        Route("queueworks.core.tasks.heavy_probe", "heavy", acks_late=True),
    ),
    schedules=(
        *builtin_schedules(queue="main_worker"),
        Schedule(
            name="office-hours-reminders",
            task=f"{NOTIFICATIONS}.send_office_hours_reminders",
            # On the hour, 08:00-17:00, Monday to Friday, in CELERY_TIMEZONE.
            schedule=crontab(minute=0, hour="8-17", day_of_week="mon-fri"),
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
    ),
    # No process balancing: each program keeps its declared concurrency.  To
    # let pool processes follow the backlog across some programs of a host,
    # declare e.g. balance=Balance(workers=("reports_a", "reports_b"), budget=6,
    # max_processes=4) (docs/balancer.md).
    balance=None,
)


# Test-only tasks (apps/testing): the throughput benchmark's unit of work
# (bench/throughput.py) and the fault-injection harness's tasks
# (bench/faults.py).  Routed only where that app is installed: the test suite,
# the live test system and the benchmarks set DJANGO_TEST_SUPPORT=1, which
# the production profile refuses (queueworks/core/profiles.py).
TESTING = "apps.testing.tasks"
DJANGO_TESTING = "apps.testing.django_tasks"
TEST_SUPPORT_APP = "apps.testing"
TEST_SUPPORT_ROUTES = (
    Route(f"{TESTING}.noop", "bulk", acks_late=True),
    Route(f"{TESTING}.fault_effect", "main_worker"),
    Route(f"{TESTING}.fault_effect_heavy", "heavy"),
    Route(f"{TESTING}.fault_flaky", "main_worker"),
    Route(f"{TESTING}.fault_sleep", "main_worker", soft_time_limit=2, time_limit=5),
    Route(f"{TESTING}.fault_crash", "main_worker", max_deliveries=3),
    # Limits across workers (queueworks/limits; tests/queueworks/limits).
    Route(f"{TESTING}.limited_rate", "bulk",
          rate_limit=RateLimit(starts=5, per_seconds=1.0, key="tenant_id")),
    Route(f"{TESTING}.limited_concurrency", "main_worker", soft_time_limit=4, time_limit=5,
          concurrency_limit=ConcurrencyLimit(running=1, key="tenant_id", lease_seconds=8)),
    # bench/limits.py, across the bulk lane of two worker hosts.
    Route(f"{TESTING}.limits_bench_rate", "bulk",
          rate_limit=RateLimit(starts=20, per_seconds=1.0, burst=2, key="tenant_id")),
    Route(f"{TESTING}.limits_bench_concurrency", "bulk",
          concurrency_limit=ConcurrencyLimit(running=3, key="tenant_id")),
    Route(f"{TESTING}.limits_bench_plain", "bulk"),
    Route(f"{TESTING}.limits_bench_limited", "bulk",
          rate_limit=RateLimit(starts=1_000_000, per_seconds=1.0, key="tenant_id")),
    # Django @task functions (queueworks/tasks_backend).
    Route(f"{DJANGO_TESTING}.echo", "main_worker"),
    Route(f"{DJANGO_TESTING}.fails", "main_worker"),
    Route(f"{DJANGO_TESTING}.attempt_of", "main_worker", acks_late=True),
    Route(f"{DJANGO_TESTING}.ordered", "main_worker"),
    Route(f"{DJANGO_TESTING}.limited_echo", "main_worker",
          concurrency_limit=ConcurrencyLimit(running=2, key="tenant_id")),
    # Fire and forget, like the Celery noop: the bulk lane stores no result.
    Route(f"{DJANGO_TESTING}.noop", "bulk", acks_late=True, ignore_result=True),
    # Unique tasks (tests/queueworks/limits): a short lease for the SIGKILL test.
    Route(f"{TESTING}.unique_job", "main_worker", time_limit=10,
          unique=Unique(key="tenant_id", lease_seconds=15)),
    Route(f"{TESTING}.unique_job_early_ack", "main_worker", acks_late=False, time_limit=8,
          unique=Unique(key="tenant_id", lease_seconds=10)),
    Route(f"{DJANGO_TESTING}.unique_echo", "main_worker", unique=Unique(key="tenant_id")),
    # A route's time limits on each lane (tests/queueworks/core/test_route_time_limits*.py):
    # a hard limit far below the worker's soft one, and a soft limit alone.
    Route(f"{TESTING}.hard_limited_main", "main_worker", time_limit=3),
    Route(f"{TESTING}.hard_limited_bulk", "bulk", time_limit=3),
    Route(f"{TESTING}.hard_limited_heavy", "heavy", time_limit=3),
    Route(f"{TESTING}.soft_limited_main", "main_worker", soft_time_limit=1),
)


def test_support_enabled() -> bool:
    """DJANGO_TEST_SUPPORT, read like django-environ reads a bool."""
    return os.environ.get("DJANGO_TEST_SUPPORT", "").strip().lower() in ("1", "true", "yes", "on", "y")


def topology_for(*, test_support: bool, base: Topology | None = None) -> Topology:
    """``base`` (the production topology by default) with the test-only
    routes, or without them."""
    base = PRODUCTION_TOPOLOGY if base is None else base
    routes = tuple(route for route in base.routes if route not in TEST_SUPPORT_ROUTES)
    if test_support:
        routes += TEST_SUPPORT_ROUTES
    return replace(base, routes=routes)


TOPOLOGY = topology_for(test_support=test_support_enabled())
