"""The Celery application, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import celeryd_init, setup_logging

from apps.balancer import control as balancer_control  # noqa: F401  (balancer_pool_grow)
from apps.core import remote_conf  # noqa: F401  (`inspect conf` without secrets)
from apps.core import timer_compaction  # noqa: F401  (`inspect timer_entries`)
from apps.core.cpu_policy import on_worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")

# Every task gets delivery limits, dead-lettering of exhausted retries and
# safe long countdowns (apps/reliability/base.py).
app = Celery("projectname", task_cls="apps.reliability.base:ReliableTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Worker.prefetch_headroom: a message ready for the next free pool process
# without hoarding a priority backlog (apps/core/prefetch.py).
app.steps["consumer"].add("apps.core.prefetch:PrefetchHeadroom")
# Worker.task_events_lease: task events only while Flower asks for them
# (apps/core/events.py).
app.steps["consumer"].add("apps.core.events:TaskEventsLease")
# Cancelled time-limit timers leave the main process's event loop timer
# instead of piling up until due (apps/core/timer_compaction.py).
app.steps["worker"].add("apps.core.timer_compaction:TimerCompaction")
# Each worker program runs under the CPU scheduling policy its topology entry
# declares (apps/core/cpu_policy.py: background work yields to requests).
celeryd_init.connect(on_worker_init, weak=False)


@setup_logging.connect
def use_django_logging(loglevel=None, **kwargs):
    """Workers log through Django's LOGGING instead of Celery's own setup.

    A worker's ``--loglevel`` (rendered per program from the topology) still
    applies to Celery's loggers: a high-volume worker logs at WARNING instead
    of two INFO lines per task.
    """
    import logging
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger("celery").setLevel(loglevel)
