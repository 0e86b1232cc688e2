"""Beat's scheduler: django-celery-beat's DatabaseScheduler, topology-aware.

Run as ``celery -A projectname beat --scheduler queueworks.ops.scheduler:DatabaseScheduler``.
It is django-celery-beat's ``DatabaseScheduler`` with two changes:

* At start it runs the same three-way merge as ``manage.py sync_schedules``
  instead of the stock ``update_or_create`` from ``beat_schedule``, which would
  overwrite every admin edit of a topology entry at each beat restart.
* An entry's exchange and routing key always follow its ``queue`` (every
  declared queue is bound to the direct exchange of its own name), so changing
  the queue in the admin can never publish to an exchange with no binding.

* A database that was never synced (fresh, or wiped under a running beat,
  as a test-suite flush does) is synced again on the next tick, instead of
  beat silently running with no entries.
* Exactly one beat schedules: on its first tick it takes queueworks.reliability's RabbitMQ lock
  (an exclusive queue, see ``queueworks/reliability/beat.py``) before it schedules,
  stands by while another beat holds it, and exits if it loses it.

Everything else (the database is read again whenever an entry changes, at
least every 5 s) is the stock scheduler.
"""

from __future__ import annotations

import logging

from celery.schedules import crontab
from django.db import DatabaseError
from django_celery_beat import schedulers

from queueworks.reliability.beat import SingleBeatMixin
from queueworks.conf import TOPOLOGY

logger = logging.getLogger(__name__)


class ModelEntry(schedulers.ModelEntry):
    def __init__(self, model, app=None):
        super().__init__(model, app=app)
        declared = self.app.amqp.queues.get(self.options.get("queue"))
        if declared is not None:
            self.options["exchange"] = declared.exchange.name
            self.options["routing_key"] = declared.routing_key


class DatabaseScheduler(SingleBeatMixin, schedulers.DatabaseScheduler):
    """Takes the beat lock on its first tick (see SingleBeatMixin), so a
    standby beat stays stoppable with SIGTERM."""

    Entry = ModelEntry

    def _sync_topology(self) -> None:
        from queueworks.ops.services import schedules_sync

        report = schedules_sync()
        for line in report.changes + report.kept:
            logger.info("sync_schedules: %s", line)

    def setup_schedule(self):
        # Sync first: the first read of self.schedule loads the database.
        self._sync_topology()
        self.install_default_entries(self.schedule)

    def _default_cleanup_wanted(self) -> bool:
        declared = {entry.name for entry in TOPOLOGY.schedules}
        return bool(self.app.conf.result_expires) and "celery.backend_cleanup" not in declared

    def install_default_entries(self, data):
        # When the topology declares celery.backend_cleanup (with its queue),
        # sync_schedules owns it; the stock default would reset its queue.
        if self._default_cleanup_wanted():
            super().install_default_entries(data)

    def schedule_changed(self):
        from queueworks.ops.models import SyncedSchedule

        try:
            never_synced = not SyncedSchedule.objects.exists()
            if never_synced:
                logger.warning("The schedule tables were never synced (or were wiped): "
                               "syncing the topology's schedules again.")
                self._sync_topology()
                if self._default_cleanup_wanted():  # what install_default_entries adds
                    self.Entry.from_entry(
                        "celery.backend_cleanup", app=self.app, task="celery.backend_cleanup",
                        schedule=crontab("0", "4", "*"), options={"expire_seconds": 12 * 3600})
        except DatabaseError as exc:
            logger.warning("Cannot check the schedule tables: %r", exc)
            return False
        return super().schedule_changed() or never_synced
