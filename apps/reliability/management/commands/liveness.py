"""Are the workers consuming?  Consumer counts per queue, from RabbitMQ.

    python manage.py liveness                 # table; exit 1 when a queue lacks consumers
    python manage.py liveness --json
    python manage.py liveness --restart       # also restart (supervisorctl) the worker
                                              # programs of those queues, if RUNNING > --grace s

`celery inspect ping` only proves a worker process answers; after a broker
outage a worker can answer pings yet have no consumer on a queue.  This reads
the broker's own consumer count (passive queue.declare), which is what decides
whether messages get delivered.  Run it from cron or a monitoring agent.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kombu.exceptions import OperationalError

from apps.reliability.services import queues_liveness


class Command(BaseCommand):
    help = "Check that every topology queue has its consumers; optionally restart stuck workers."

    def add_arguments(self, parser):
        parser.add_argument("--hosts", type=int, default=1,
                            help="Hosts that run every worker program (expected consumers per program).")
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--restart", action="store_true",
                            help="Restart the worker programs of queues below their consumer count.")
        parser.add_argument("--grace", type=int, default=60,
                            help="Only restart programs RUNNING for at least this many seconds.")
        parser.add_argument("--supervisor-conf", default=str(Path(settings.BASE_DIR) / "deploy" / "supervisord.conf"),
                            help="supervisord config for supervisorctl (default: deploy/supervisord.conf).")

    def handle(self, *args, hosts, restart, grace, supervisor_conf, **options):
        if hosts < 1:
            raise CommandError("--hosts must be at least 1")
        try:
            report = queues_liveness(hosts=hosts)
        except OperationalError as exc:
            raise CommandError(f"cannot reach the broker: {exc}") from exc
        failing = [q for q in report if not q.ok]
        if options["json"]:
            self.stdout.write(json.dumps([
                {"queue": q.queue, "consumers": q.consumers, "expected": q.expected,
                 "messages": q.messages, "workers": list(q.workers), "ok": q.ok}
                for q in report
            ], indent=2))
        else:
            self.stdout.write(f"{'QUEUE':20} {'CONSUMERS':>9} {'EXPECTED':>8} {'MESSAGES':>8}  STATUS  WORKERS")
            for q in report:
                self.stdout.write(f"{q.queue:20} {q.consumers:>9} {q.expected:>8} {q.messages:>8}  "
                                  f"{'ok' if q.ok else 'MISSING':7} {','.join(q.workers)}")
        if failing and restart:
            programs = sorted({w for q in failing for w in q.workers})
            self._restart(programs, grace, supervisor_conf)
        if failing:
            sys.exit(1)

    def _restart(self, programs, grace, conf):
        ctl = [str(Path(sys.executable).parent / "supervisorctl"), "-c", conf]
        for program in programs:
            status = subprocess.run([*ctl, "status", program], capture_output=True, text=True)
            uptime = _uptime_seconds(status.stdout)
            if " RUNNING " not in f" {status.stdout} " or uptime is None:
                self.stderr.write(f"{program}: not RUNNING under supervisor ({status.stdout.strip() or status.stderr.strip()}); not restarting")
                continue
            if uptime < grace:
                self.stderr.write(f"{program}: running only {uptime}s (< --grace {grace}s); not restarting yet")
                continue
            result = subprocess.run([*ctl, "restart", program], capture_output=True, text=True)
            self.stderr.write(f"{program}: restarted ({result.stdout.strip() or result.stderr.strip()})")


def _uptime_seconds(status_line: str) -> int | None:
    """Seconds from supervisorctl's "RUNNING pid 12, uptime 1 day, 0:05:12"."""
    match = re.search(r"uptime (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)", status_line)
    if not match:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
