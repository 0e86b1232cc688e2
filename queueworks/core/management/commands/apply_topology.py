"""Apply a change of the project's topology (QUEUEWORKS_TOPOLOGY) to the running system in one step.

1. refuse a topology the system checks reject (nothing is written);
2. render deploy/conf.d/*.conf and deploy/systemd/* (as render_supervisor and
   render_systemd do);
3. grant the project's RabbitMQ user the topology's queues and exchanges
   (its permissions are derived from the topology: a new queue needs them);
4. ask the running supervisord to reread and update: new programs start,
   programs whose file changed restart, removed ones stop;
5. restart the running programs whose routes, schedules or task options
   changed (web and beat hold the routes), and no other;
6. record what was applied (``$RUN_DIR/topology-applied.json``).
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from queueworks.core import supervisord_client
from queueworks.core.broker_state import current_broker_url
from queueworks.core.topology_changes import programs_to_restart, read_applied, record_applied
from queueworks.conf import TOPOLOGY
from queueworks.conf import settings as queueworks_settings
from queueworks.conf import project_root


class Command(BaseCommand):
    help = ("Render the supervisor and systemd files from the topology, then update the running "
            "supervisord and restart exactly the programs whose routes, schedules or options changed.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="Print what would change; write nothing, restart nothing.")
        parser.add_argument("--run-dir", default=None,
                            help="supervisord's state directory with supervisor.sock "
                                 "(default: $RUN_DIR, else run/; with --host the inventory's).")
        parser.add_argument("--host", default=None,
                            help="One host of the inventory (QUEUEWORKS_INVENTORY): render "
                                 "its files (deploy/hosts/<host>/) and update its supervisord.")

    def handle(self, *args, dry_run: bool, run_dir: str | None, host: str | None = None,
               **options):
        from queueworks.core.inventory import declared

        # A topology that strands tasks is refused before anything is written.
        call_command("check", stdout=self.stdout, stderr=self.stderr)
        inventory = declared()
        if host is not None and (inventory is None or host not in inventory.host_names()):
            raise CommandError(f"--host {host!r} is not a host of the inventory "
                               f"(QUEUEWORKS_INVENTORY): "
                               f"{', '.join(inventory.host_names()) if inventory else 'none declared'}.")
        if run_dir:
            run = Path(run_dir)
        elif host is not None:
            run = Path(inventory.paths_of(host).run_dir)
        else:
            run = supervisord_client.run_dir(project_root())

        self.stdout.write("deploy files:")
        for command in ("render_supervisor", "render_systemd"):
            try:
                call_command(command, check=dry_run, stdout=self.stdout,
                             **({"host": host} if host else {}))
            except CommandError:
                if not dry_run:
                    raise
                self.stdout.write("(dry run: the files above would be written)")

        if not dry_run:
            self._grant_broker_permissions()

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

    def _grant_broker_permissions(self) -> None:
        """The project user's RabbitMQ permissions, derived again from this
        topology, granted by the broker administrator in
        RABBITMQ_ADMIN_USER/PASSWORD (the environment or .env: development)."""
        from queueworks.core.broker_access import project_permissions
        from queueworks.core.broker_setup import Management, SetupError, read_env_file

        dotenv = read_env_file(project_root() / ".env")
        admin = [os.environ.get(name) or dotenv.get(name, "")
                 for name in ("RABBITMQ_ADMIN_USER", "RABBITMQ_ADMIN_PASSWORD")]
        broker = urlsplit(current_broker_url().split(";")[0])
        user, vhost = unquote(broker.username or ""), unquote(broker.path[1:]) or "/"
        if not all(admin):
            self.stdout.write(
                f"broker permissions: not changed (no RABBITMQ_ADMIN_USER/PASSWORD); a new queue "
                f"needs them: `deploy/bin/ensure-rabbitmq-user.sh --production` grants {user!r}.")
            return
        try:
            Management(queueworks_settings.RABBITMQ_MANAGEMENT_URL, *admin).grant(
                vhost, user, project_permissions().as_json())
        except (requests.RequestException, SetupError) as exc:
            raise CommandError(f"cannot grant {user!r} the topology's queues on vhost {vhost!r} "
                               f"({exc}); nothing was restarted.") from exc
        self.stdout.write(f"broker permissions: {user!r} on vhost {vhost!r} covers the topology.")
