"""``manage.py ops_alerts``: evaluate every alert (wait time, no consumer,
crash loop) and notify new and cleared incidents.

``--loop`` is the ``alerts`` program (queueworks/core/supervisor.py): it reads
the broker's management API and supervisord directly, never through a task
queue, so no lane's backlog and no stopped worker delays an alert.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger("queueworks.ops.alerts")


class Command(BaseCommand):
    help = ("Evaluate the alerts (wait time, no consumer, crash loop) and notify new and "
            "cleared incidents; once, or with --loop as the alerts program does.")

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true",
                            help="Evaluate again and again until stopped (the alerts program).")
        parser.add_argument("--every", type=float, default=None, metavar="SECONDS",
                            help="Seconds between evaluations with --loop (default: "
                                 "OPS_ALERTS_INTERVAL_SECONDS).")

    def handle(self, *args, loop: bool, every: float | None, **options):
        if every is not None and not loop:
            raise CommandError("--every needs --loop.")
        interval = every if every is not None else queueworks_settings.OPS_ALERTS_INTERVAL_SECONDS
        if loop and not interval > 0:
            raise CommandError(f"--every must be a positive number of seconds, got {interval}.")
        if not loop:
            self._report(self._evaluate())
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        logger.info("alerts: evaluating every %g s", interval)
        while not stop.is_set():
            started = time.monotonic()
            close_old_connections()  # a database restart is not fatal to the loop
            try:
                self._evaluate()
            except Exception:  # noqa: BLE001 - the next round tries again; the loop stays up
                logger.exception("alerts: evaluation failed")
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    @staticmethod
    def _evaluate():
        from queueworks.ops.services import alerts_check

        return alerts_check()

    def _report(self, incidents) -> None:
        for incident in incidents:
            self.stdout.write(f"OPEN {incident.queue} {incident.kind}: {incident.detail}")
        if not incidents:
            self.stdout.write("no open incidents")
