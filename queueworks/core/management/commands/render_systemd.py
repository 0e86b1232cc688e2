from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from queueworks.core.generated import sync_generated_files
from queueworks.core.host_files import render_host_unit_files
from queueworks.core.systemd import GENERATED_MARK, Layout, render_unit_files
from queueworks.core.inventory import declared
from queueworks.conf import TOPOLOGY
# Renamed: handle()'s project_root is the --project-root option (the target host's).
from queueworks.conf import project_root as local_project_root


class Command(BaseCommand):
    help = ("Render systemd units (one per program plus <project>.target) from the "
            "topology into deploy/systemd/.")

    def add_arguments(self, parser):
        defaults = Layout()
        parser.add_argument("--check", action="store_true",
                            help="Write nothing; exit 1 and print a diff if the files differ.")
        parser.add_argument("--output-dir", default=None,
                            help="Where the unit files go (default: deploy/systemd/, or "
                                 "deploy/hosts/<host>/systemd/ with --host).")
        parser.add_argument("--host", default=None,
                            help="One host of the inventory (QUEUEWORKS_INVENTORY): its "
                                 "supervisord boot unit and its programs' units, paths and user "
                                 "from the inventory.")
        parser.add_argument("--supervisor-conf", default=None,
                            help="With --host: the host's supervisord.conf as the boot unit "
                                 "starts it (default: <project root>/deploy/hosts/<host>/"
                                 "supervisord.conf).")
        parser.add_argument("--project-root", default=defaults.project_root,
                            help=f"Checkout on the target host, with its .venv (default: {defaults.project_root}).")
        parser.add_argument("--user", default=defaults.user,
                            help=f"Unix user the programs run as (default: {defaults.user}).")
        parser.add_argument("--env-file", default=defaults.env_file,
                            help=f"EnvironmentFile= with the settings (default: {defaults.env_file}).")

    def handle(self, *args, check: bool, output_dir: str | None, project_root: str, user: str,
               env_file: str, host: str | None = None, supervisor_conf: str | None = None,
               **options):
        if host is not None:
            return self._host(host, check=check, output_dir=output_dir, conf=supervisor_conf)
        if supervisor_conf is not None:
            raise CommandError("--supervisor-conf needs --host.")
        output_dir = output_dir or str(local_project_root() / "deploy" / "systemd")
        for name, value in (("--project-root", project_root), ("--env-file", env_file)):
            if not value.startswith("/"):
                raise CommandError(f"{name} must be an absolute path (systemd requires it), got {value!r}.")
        if not user or any(c.isspace() for c in user):
            raise CommandError(f"--user must be a user name, got {user!r}.")
        layout = Layout(project_root=project_root.rstrip("/") or "/", user=user, env_file=env_file)
        self._sync(Path(output_dir), render_unit_files(TOPOLOGY, layout), check=check)

    def _host(self, host: str, *, check: bool, output_dir: str | None, conf: str | None):
        inventory = declared()
        if inventory is None:
            raise CommandError("--host needs an inventory: declare hosts in the inventory (QUEUEWORKS_INVENTORY) "
                               "(or set DEPLOY_INVENTORY=module:ATTRIBUTE).")
        if host not in inventory.host_names():
            raise CommandError(f"--host {host!r} is not in the inventory; hosts: "
                               f"{', '.join(inventory.host_names())}.")
        if conf is not None and not conf.startswith("/"):
            raise CommandError(f"--supervisor-conf must be an absolute path, got {conf!r}.")
        out = Path(output_dir or local_project_root() / "deploy" / "hosts" / host / "systemd")
        self._sync(out, render_host_unit_files(TOPOLOGY, inventory, host, conf), check=check)

    def _sync(self, out: Path, wanted: dict[str, str], *, check: bool):
        stale = [p.name for p in sorted(out.glob("*")) if p.is_file() and p.name not in wanted
                 and GENERATED_MARK in p.read_text(errors="replace")]
        sync_generated_files(
            root=out, wanted={Path(name): text for name, text in wanted.items()},
            stale=[Path(name) for name in stale], check=check,
            what="systemd unit file(s)", command="render_systemd", stdout=self.stdout,
        )
