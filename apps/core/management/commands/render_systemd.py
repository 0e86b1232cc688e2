from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.generated import sync_generated_files
from apps.core.systemd import GENERATED_MARK, Layout, render_unit_files
from projectname.topology import TOPOLOGY


class Command(BaseCommand):
    help = ("Render systemd units (one per program plus projectname.target) from the "
            "topology into deploy/systemd/.")

    def add_arguments(self, parser):
        defaults = Layout()
        parser.add_argument("--check", action="store_true",
                            help="Write nothing; exit 1 and print a diff if the files differ.")
        parser.add_argument("--output-dir", default=str(Path(settings.BASE_DIR) / "deploy" / "systemd"),
                            help="Where the unit files go (default: deploy/systemd/).")
        parser.add_argument("--project-root", default=defaults.project_root,
                            help=f"Checkout on the target host, with its .venv (default: {defaults.project_root}).")
        parser.add_argument("--user", default=defaults.user,
                            help=f"Unix user the programs run as (default: {defaults.user}).")
        parser.add_argument("--env-file", default=defaults.env_file,
                            help=f"EnvironmentFile= with the settings (default: {defaults.env_file}).")

    def handle(self, *args, check: bool, output_dir: str, project_root: str, user: str,
               env_file: str, **options):
        for name, value in (("--project-root", project_root), ("--env-file", env_file)):
            if not value.startswith("/"):
                raise CommandError(f"{name} must be an absolute path (systemd requires it), got {value!r}.")
        if not user or any(c.isspace() for c in user):
            raise CommandError(f"--user must be a user name, got {user!r}.")
        layout = Layout(project_root=project_root.rstrip("/") or "/", user=user, env_file=env_file)
        out = Path(output_dir)
        wanted = render_unit_files(TOPOLOGY, layout)
        stale = [p.name for p in sorted(out.glob("*")) if p.is_file() and p.name not in wanted
                 and GENERATED_MARK in p.read_text(errors="replace")]
        sync_generated_files(
            root=out, wanted={Path(name): text for name, text in wanted.items()},
            stale=[Path(name) for name in stale], check=check,
            what="systemd unit file(s)", command="render_systemd", stdout=self.stdout,
        )
