"""Apply a change of projectname/topology.py to the running system in one step.

1. refuse a topology the system checks reject (nothing is written);
2. render deploy/conf.d/*.conf and deploy/systemd/* (as render_supervisor and
   render_systemd do);
3. ask the running supervisord to reread and update: new programs start,
   programs whose file changed restart, removed ones stop;
4. restart the running programs whose routes, schedules or task options
   changed (web and beat hold the routes), and no other;
5. record what was applied (``$RUN_DIR/topology-applied.json``).
"""

from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from apps.core import supervisord_client
from apps.core.topology_changes import programs_to_restart, read_applied, record_applied
from projectname.topology import TOPOLOGY


class Command(BaseCommand):
    help = ("Render the supervisor and systemd files from the topology, then update the running "
            "supervisord and restart exactly the programs whose routes, schedules or options changed.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="Print what would change; write nothing, restart nothing.")
        parser.add_argument("--run-dir", default=None,
                            help="supervisord's state directory with supervisor.sock "
                                 "(default: $RUN_DIR, else run/).")

    def handle(self, *args, dry_run: bool, run_dir: str | None, **options):
        # A topology that strands tasks is refused before anything is written.
        call_command("check", stdout=self.stdout, stderr=self.stderr)
        run = Path(run_dir) if run_dir else supervisord_client.run_dir(settings.BASE_DIR)

        self.stdout.write("deploy files:")
        for command in ("render_supervisor", "render_systemd"):
            try:
                call_command(command, check=dry_run, stdout=self.stdout)
            except CommandError:
                if not dry_run:
                    raise
                self.stdout.write("(dry run: the files above would be written)")

        supervisord = supervisord_client.Supervisord(run / "supervisor.sock")
        if not supervisord.running():
            self.stdout.write(f"supervisord is not running ({run / 'supervisor.sock'}): nothing to "
                              "restart; `make run` starts every program with this topology.")
            if not dry_run:
                record_applied(run, TOPOLOGY)
            return

        running = set(supervisord.process_info())
        applied = read_applied(run)
        if dry_run:
            restarts = programs_to_restart(applied=applied, topology=TOPOLOGY, running=running)
            for name, reason in restarts.items():
                self.stdout.write(f"would restart {name}: {reason}")
            self.stdout.write("dry run: supervisord not updated, nothing restarted.")
            return

        update = supervisord.update()
        for label, names in (("started (new program)", update.added),
                             ("restarted by supervisord (its program file changed)", update.changed),
                             ("stopped and removed", update.removed)):
            for name in names:
                self.stdout.write(f"{label}: {name}")
        running = set(supervisord.process_info()) - set(update.added) - set(update.changed)
        restarts = programs_to_restart(applied=applied, topology=TOPOLOGY, running=running)
        for name, reason in restarts.items():
            self.stdout.write(f"restarting {name}: {reason} ...")
            self.stdout.flush()
            supervisord.restart(name)
            self.stdout.write(f"restarted: {name}")
        unchanged = sorted(running - set(restarts))
        if unchanged:
            self.stdout.write(f"unchanged: {', '.join(unchanged)}")
        record_applied(run, TOPOLOGY)
        self.stdout.write("topology applied.")
