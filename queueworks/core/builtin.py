"""The package's own tasks: their routes and beat schedules, for a host
project's topology to include.

A project puts them on a lane its workers consume:

    routes=(*builtin_routes(queue="main_worker"), Route("shop.tasks.mail", ...)),
    schedules=(*builtin_schedules(queue="main_worker"), Schedule(...)),

The alerts are not among them: a queue's backlog or a stopped worker would
delay the very alert that reports it, so they are evaluated by a program of
their own (``manage.py ops_alerts --loop``, queueworks/core/supervisor.py).
"""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab

from queueworks.core.topology import Route, Schedule

# beat sends a heartbeat this often; `manage.py doctor` calls beat dead after 4 missed.
BEAT_HEARTBEAT_SECONDS = 15
# The Task API's outbox sweeper runs this often (queueworks/taskapi/outbox.py).
OUTBOX_SWEEP_SECONDS = 30

PROBE = "queueworks.core.tasks.probe"
DIAGNOSE = "queueworks.taskapi.tasks.diagnose"
OUTBOX_SWEEP = "queueworks.taskapi.tasks.sweep_outbox"
BACKEND_CLEANUP = "celery.backend_cleanup"
BEAT_HEARTBEAT = "queueworks.doctor.tasks.beat_heartbeat"
DISPATCH_DELAYED = "queueworks.reliability.tasks.dispatch_delayed_tasks"
LIMITS_WAKE = "queueworks.limits.tasks.wake_limit_waiters"
# Calls parked behind a concurrency slot whose holder died without ending are
# woken at most this long after its lease ends (queueworks/limits/handoff.py).
LIMITS_WAKE_SECONDS = 15


def builtin_routes(*, queue: str) -> tuple[Route, ...]:
    """Routes of every task the package defines and runs by itself."""
    return (
        # A diagnostic round trip (`manage.py doctor`, the Task API's probe).
        Route(PROBE, queue),
        # Task API: the diagnostic task operators can start; the outbox sweep.
        Route(DIAGNOSE, queue),
        Route(OUTBOX_SWEEP, queue),
        # Celery's own result cleanup (beat installs it when result_expires is set).
        Route(BACKEND_CLEANUP, queue, ignore_result=True),
        Route(BEAT_HEARTBEAT, queue),
        # Reliability: delayed dispatch of long countdowns.
        Route(DISPATCH_DELAYED, queue, ignore_result=True),
        # Limits: the sweep of concurrency slots freed by ended leases.
        Route(LIMITS_WAKE, queue, ignore_result=True),
    )


def builtin_schedules(*, queue: str) -> tuple[Schedule, ...]:
    """Beat entries the package needs: heartbeat, long delays, the outbox
    sweep and Celery's result cleanup."""
    return (
        Schedule(
            name="beat-heartbeat",
            task=BEAT_HEARTBEAT,
            # Proves beat ticks and its messages are consumed (manage.py doctor).
            schedule=timedelta(seconds=BEAT_HEARTBEAT_SECONDS),
            queue=queue,
        ),
        Schedule(
            name="reliability-dispatch-delayed",
            # Publishes tasks whose long countdown/ETA is now close (see
            # queueworks/reliability: RabbitMQ's consumer_timeout).
            task=DISPATCH_DELAYED,
            schedule=crontab(minute="*"),
            queue=queue,
        ),
        Schedule(
            name="limits-wake-waiters",
            # Hands concurrency slots freed by ended leases (a holder killed
            # without ending) to the calls parked behind them.
            task=LIMITS_WAKE,
            schedule=timedelta(seconds=LIMITS_WAKE_SECONDS),
            queue=queue,
        ),
        Schedule(
            name="taskapi-outbox-sweep",
            # Publishes again accepted tasks whose message the broker has not
            # confirmed QUEUEWORKS_TASKAPI_OUTBOX_REPUBLISH_AFTER_SECONDS after
            # acceptance (queueworks/taskapi/outbox.py).
            task=OUTBOX_SWEEP,
            schedule=timedelta(seconds=OUTBOX_SWEEP_SECONDS),
            queue=queue,
        ),
        Schedule(
            # Exactly the entry beat adds by itself when result_expires is set
            # (both schedulers), declared so it is visible and on a consumed
            # queue: deletes results older than result_expires, and the Task
            # API's records with them (queueworks/taskapi/signals.py).
            name="celery.backend_cleanup",
            task=BACKEND_CLEANUP,
            schedule=crontab(minute=0, hour=4),
            queue=queue,
        ),
    )
