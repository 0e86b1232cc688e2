import re
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from queueworks.core.generated import sync_generated_files
from queueworks.core.host_files import render_host_supervisor_files
from queueworks.core.supervisor import (
    GENERATED_MARK, program_names, render_program_files, render_supervisord_conf,
)
from queueworks.core.inventory import declared
from queueworks.conf import TOPOLOGY
from queueworks.conf import project_root


class Command(BaseCommand):
    help = "Render deploy/supervisord.conf and deploy/conf.d/*.conf from the topology."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true",
            help="Write nothing; exit 1 and print a diff if the files differ.",
        )
        parser.add_argument(
            "--deploy-dir", default=None,
            help="Directory holding supervisord.conf and conf.d/ "
                 "(default: deploy/, or deploy/hosts/<host>/ with --host).",
        )
        parser.add_argument(
            "--host", default=None,
            help="Render one host's configuration into deploy/hosts/<host>/: with an inventory "
                 "(QUEUEWORKS_INVENTORY) that host's programs, self-contained; without "
                 "one, the --programs given (workers named <program>@<host>, state in $RUN_DIR).",
        )
        parser.add_argument(
            "--programs", default=None,
            help="With --host: comma-separated programs this host runs "
                 "(default: every worker program of the topology).",
        )

    def handle(self, *args, check: bool, deploy_dir: str | None, host: str | None,
               programs: str | None, **options):
        inventory = declared()
        if host is None:
            if programs is not None:
                raise CommandError("--programs needs --host (the default render has every program).")
            deploy = Path(deploy_dir or project_root() / "deploy")
            wanted = {Path("supervisord.conf"): render_supervisord_conf()}
            wanted.update({Path("conf.d") / name: text
                           for name, text in render_program_files(TOPOLOGY).items()})
        elif inventory is not None and programs is None:
            if host not in inventory.host_names():
                raise CommandError(f"--host {host!r} is not in the inventory; hosts: "
                                   f"{', '.join(inventory.host_names())}.")
            deploy = Path(deploy_dir or project_root() / "deploy" / "hosts" / host)
            wanted = {Path(path): text for path, text in
                      render_host_supervisor_files(TOPOLOGY, inventory, host).items()}
        else:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", host):
                raise CommandError(
                    f"--host {host!r} is not a valid host name (letters, digits, '_', '.', '-')."
                )
            known = program_names(TOPOLOGY)
            chosen = ([name.strip() for name in programs.split(",") if name.strip()]
                      if programs is not None else [worker.name for worker in TOPOLOGY.workers])
            unknown = [name for name in chosen if name not in known]
            if unknown or not chosen:
                raise CommandError(
                    f"--programs: unknown program(s) {', '.join(unknown) or '(none given)'}; "
                    f"choose from {', '.join(known)}."
                )
            deploy = Path(deploy_dir or project_root() / "deploy" / "hosts" / host)
            wanted = {Path("supervisord.conf"): render_supervisord_conf(
                run_dir="%(ENV_RUN_DIR)s", include="conf.d/*.conf")}
            wanted.update({Path("conf.d") / name: text for name, text in
                           render_program_files(TOPOLOGY, host=host, only=chosen).items()})
        # Generated files whose program left the topology must go too.
        stale = [
            path.relative_to(deploy) for path in sorted((deploy / "conf.d").glob("*.conf"))
            if path.relative_to(deploy) not in wanted and GENERATED_MARK in path.read_text()
        ]

        sync_generated_files(
            root=deploy, wanted=wanted, stale=stale, check=check,
            what="supervisor file(s)", command="render_supervisor", stdout=self.stdout,
        )
