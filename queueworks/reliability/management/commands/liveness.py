"""Are the workers consuming?  Consumer counts per queue, from RabbitMQ.

    python manage.py liveness                 # table; exit 1 when a queue lacks consumers
    python manage.py liveness --json
    python manage.py liveness --restart       # also restart (through supervisord) the worker
                                              # programs of those queues, if RUNNING > --grace s

`celery inspect ping` only proves a worker process answers; after a broker
outage a worker can answer pings yet have no consumer on a queue.  This reads
the broker's own consumer count (passive queue.declare), which is what decides
whether messages get delivered.  Run it from cron or a monitoring agent.
"""

import json
import sys
import xmlrpc.client
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kombu.exceptions import OperationalError

from queueworks.core import supervisord_client
from queueworks.core.inventory import current_host_name, declared
from queueworks.reliability.liveness import queues_liveness
from queueworks.conf import project_root


class Command(BaseCommand):
    help = "Check that every topology queue has its consumers; optionally restart stuck workers."

    def add_arguments(self, parser):
        parser.add_argument("--hosts", type=int, default=None,
                            help="Hosts that run every worker program (expected consumers per "
                                 "program); with an inventory (QUEUEWORKS_INVENTORY) the hosts "
                                 "declared for each program are counted instead.")
        parser.add_argument("--host", default=None,
                            help="With an inventory: the host this runs on (default: $DEPLOY_HOST); "
                                 "--restart only restarts the programs declared on it.")
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--restart", action="store_true",
                            help="Restart the worker programs of queues below their consumer count.")
        parser.add_argument("--grace", type=int, default=60,
                            help="Only restart programs RUNNING for at least this many seconds.")
        parser.add_argument("--run-dir", default=None,
                            help="supervisord's state directory with supervisor.sock "
                                 "(default: $RUN_DIR, else run/).")

    def handle(self, *args, hosts, restart, grace, run_dir, host=None, **options):
        inventory = declared()
        if hosts is not None and hosts < 1:
            raise CommandError("--hosts must be at least 1")
        if hosts is not None and inventory is not None:
            raise CommandError("--hosts: the inventory (QUEUEWORKS_INVENTORY) already says "
                               "which hosts run each program; leave --hosts out.")
        host = host or current_host_name()
        if inventory is not None and restart:
            if host is None:
                raise CommandError("--restart with an inventory needs --host (or $DEPLOY_HOST): "
                                   "only the programs declared on this host are restarted here.")
            if host not in inventory.host_names():
                raise CommandError(f"--host {host!r} is not in the inventory; hosts: "
                                   f"{', '.join(inventory.host_names())}.")
        try:
            report = queues_liveness(hosts=hosts or 1, inventory=inventory)
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
            if inventory is not None:
                # Another host's program is restarted by that host's own liveness run.
                here = set(inventory.programs_on(host))
                for program in programs:
                    if program not in here:
                        self.stderr.write(f"{program}: runs on "
                                          f"{', '.join(h.name for h in inventory.hosts_running(program))}"
                                          f", not {host}; not restarting here")
                programs = [program for program in programs if program in here]
            run = Path(run_dir) if run_dir else supervisord_client.run_dir(project_root())
            self._restart(programs, grace, supervisord_client.Supervisord(run / "supervisor.sock"))
        if failing:
            sys.exit(1)

    def _restart(self, programs, grace, supervisord):
        try:
            infos = supervisord.process_info()
        except supervisord_client.SupervisordUnreachable as exc:
            raise CommandError(f"cannot restart workers: {exc}") from exc
        for program in programs:
            info = infos.get(program)
            uptime = uptime_seconds(info) if info else None
            if uptime is None:
                state = info["statename"] if info else "not a supervisord program"
                self.stderr.write(f"{program}: not RUNNING under supervisor ({state}); not restarting")
                continue
            if uptime < grace:
                self.stderr.write(f"{program}: running only {uptime}s (< --grace {grace}s); not restarting yet")
                continue
            try:
                supervisord.restart(program)
            except xmlrpc.client.Fault as fault:
                self.stderr.write(f"{program}: restart failed ({fault.faultString})")
                continue
            self.stderr.write(f"{program}: restarted (warm shutdown, then started)")


def uptime_seconds(info: dict) -> int | None:
    """Seconds a RUNNING program has been up, from supervisord's process info."""
    if info.get("statename") != "RUNNING" or not info.get("start"):
        return None
    return max(0, int(info["now"]) - int(info["start"]))
