"""Everything the package adds to the host project's Celery application, in
one call from the project's ``celery.py``:

    app = Celery("mysite")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    queueworks.celery_app.install(app)
    app.autodiscover_tasks()

Celery finds the application through the project (``celery -A mysite``), and
the package finds it through QUEUEWORKS_CELERY_APP, never the other way round.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import celeryd_init, import_modules, setup_logging

# Every task gets delivery limits, dead-lettering of exhausted retries and
# safe long countdowns (queueworks/reliability/base.py).
TASK_CLASS = "queueworks.reliability.base:ReliableTask"
# Loggers that write a line per task: Celery's, and Django's task API's
# (``django.tasks`` on Django 6, ``django_tasks`` for the backport).
TASK_LOGGERS = ("celery", "django.tasks", "django_tasks")


def install(app: Celery) -> Celery:
    """Give ``app`` the package's task class, worker steps, remote-control
    commands and signal handlers.  Call it before any task is defined."""
    from django.core.exceptions import ImproperlyConfigured

    if "Task" in app.__dict__ and app.task_cls != TASK_CLASS:
        raise ImproperlyConfigured(
            "queueworks.celery_app.install(app) must run before the app's first task is "
            "defined: its task class gives every task delivery limits and dead letters.")
    app.task_cls = TASK_CLASS
    # Remote-control commands (registered with Celery's control registry on import).
    from queueworks.balancer import control as balancer_control  # noqa: F401  (balancer_pool_grow)
    from queueworks.core import remote_conf  # noqa: F401  (`inspect conf` without secrets)
    from queueworks.core import timer_compaction  # noqa: F401  (`inspect timer_entries`)
    from queueworks.core.cpu_policy import on_worker_init

    # Worker.prefetch_headroom: a message ready for the next free pool process
    # without hoarding a priority backlog (queueworks/core/prefetch.py).
    app.steps["consumer"].add("queueworks.core.prefetch:PrefetchHeadroom")
    app.steps["consumer"].add("queueworks.core.prefetch:AutoscalePrefetch")
    # Worker.task_events_lease: task events only while Flower asks for them
    # (queueworks/core/events.py).
    app.steps["consumer"].add("queueworks.core.events:TaskEventsLease")
    # Cancelled time-limit timers leave the main process's event loop timer
    # instead of piling up until due (queueworks/core/timer_compaction.py).
    app.steps["worker"].add("queueworks.core.timer_compaction:TimerCompaction")
    # Each worker program runs under the CPU scheduling policy its topology
    # entry declares (queueworks/core/cpu_policy.py: background work yields).
    celeryd_init.connect(on_worker_init, weak=False)
    setup_logging.connect(use_django_logging, weak=False)
    # Functions written with Django's @task run as Celery tasks of the same
    # dotted name (queueworks/tasks_backend.py).
    import_modules.connect(_register_django_tasks, sender=app, weak=False)
    return app


def _register_django_tasks(sender=None, **kwargs):
    from queueworks.tasks_backend.worker import register_routed_django_tasks

    register_routed_django_tasks(sender)


def use_django_logging(loglevel=None, logfile=None, format=None, colorize=None, **kwargs):
    """Workers log through Django's LOGGING instead of Celery's own setup.

    A worker's ``--loglevel`` (rendered per program from the topology) still
    applies to Celery's loggers and to Django's task API's (which logs every
    start and finish of a @task function): a high-volume worker logs at
    WARNING instead of two INFO lines per task.  A project without LOGGING (Django's default
    is empty) gets Celery's own console lines, as it would without the package.
    """
    import logging
    from logging.config import dictConfig

    from celery import current_app
    from django.conf import settings

    if settings.LOGGING:
        dictConfig(settings.LOGGING)
    else:
        root = logging.getLogger()
        current_app.log.setup_handlers(root, logfile, format, colorize)
        root.setLevel(loglevel or logging.WARNING)
    if loglevel:
        for name in TASK_LOGGERS:
            logging.getLogger(name).setLevel(loglevel)
