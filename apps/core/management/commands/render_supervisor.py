import difflib
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.supervisor import GENERATED_MARK, render_program_files, render_supervisord_conf
from projectname.topology import TOPOLOGY


class Command(BaseCommand):
    help = "Render deploy/supervisord.conf and deploy/conf.d/*.conf from the topology."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true",
            help="Write nothing; exit 1 and print a diff if the files differ.",
        )
        parser.add_argument(
            "--deploy-dir", default=str(Path(settings.BASE_DIR) / "deploy"),
            help="Directory holding supervisord.conf and conf.d/ (default: deploy/).",
        )

    def handle(self, *args, check: bool, deploy_dir: str, **options):
        deploy = Path(deploy_dir)
        wanted = {Path("supervisord.conf"): render_supervisord_conf()}
        wanted.update({Path("conf.d") / name: text
                       for name, text in render_program_files(TOPOLOGY).items()})
        # Generated files whose program left the topology must go too.
        stale = [
            path.relative_to(deploy) for path in sorted((deploy / "conf.d").glob("*.conf"))
            if path.relative_to(deploy) not in wanted and GENERATED_MARK in path.read_text()
        ]

        diffs = []
        for relative, text in wanted.items():
            path = deploy / relative
            current = path.read_text() if path.exists() else ""
            if current != text:
                diffs.append((relative, current, text))
        for relative in stale:
            diffs.append((relative, (deploy / relative).read_text(), ""))

        if check:
            if not diffs:
                self.stdout.write("Supervisor files match the topology.")
                return
            for relative, current, text in diffs:
                self.stdout.write("".join(difflib.unified_diff(
                    current.splitlines(keepends=True), text.splitlines(keepends=True),
                    fromfile=f"{relative} (committed)", tofile=f"{relative} (rendered)",
                )))
            raise CommandError(
                f"{len(diffs)} supervisor file(s) differ from the topology; "
                "run `python manage.py render_supervisor` and commit the result."
            )

        (deploy / "conf.d").mkdir(parents=True, exist_ok=True)
        for relative, current, text in diffs:
            path = deploy / relative
            if text:
                path.write_text(text)
                self.stdout.write(f"wrote {path}")
            else:
                path.unlink()
                self.stdout.write(f"removed {path}")
        if not diffs:
            self.stdout.write("Supervisor files already up to date.")
