import os
import shutil
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from queueworks.core.runtime import supervisor_environment
from queueworks.core.topology_changes import record_applied
from queueworks.conf import TOPOLOGY
from queueworks.conf import project_root


class Command(BaseCommand):
    help = ("Run supervisord in the foreground with every program from deploy/conf.d "
            "(web, workers, beat, flower). Ctrl-C stops them all cleanly.")

    def add_arguments(self, parser):
        parser.add_argument(
            "--host", default=None,
            help="Run a worker host's programs: deploy/hosts/<host>/supervisord.conf "
                 "(rendered by `render_supervisor --host`), state in run/hosts/<host>/.",
        )

    def handle(self, *args, host: str | None = None, **options):
        base = project_root()
        run_dir = base / "run"
        conf = base / "deploy" / "supervisord.conf"
        if host is not None:
            run_dir = base / "run" / "hosts" / host
            conf = base / "deploy" / "hosts" / host / "supervisord.conf"
            if not conf.exists():
                raise CommandError(
                    f"--host {host}: {conf} does not exist; render it first with "
                    f"`python manage.py render_supervisor --host {host} --programs <programs>`."
                )
        environment = supervisor_environment(project_root=base, run_dir=run_dir)
        supervisord = shutil.which("supervisord", path=environment["PATH"])
        if supervisord is None:
            raise CommandError("supervisord not found: run `make install` first.")
        os.environ.update(environment)
        # What the programs start with: `apply_topology` restarts those a change concerns.
        record_applied(run_dir, TOPOLOGY)
        if host is None:
            self.stdout.write(f"supervisord: web on 127.0.0.1:{environment['WEB_PORT']}, "
                              f"flower on 127.0.0.1:{environment['FLOWER_PORT']}, logs in {run_dir}/log")
        else:
            self.stdout.write(f"supervisord for host {host}: programs from {conf.parent}/conf.d, "
                              f"logs in {run_dir}/log")
        sys.stdout.flush()
        os.chdir(base)
        os.execv(supervisord, [supervisord, "--nodaemon", "-c", str(conf)])
