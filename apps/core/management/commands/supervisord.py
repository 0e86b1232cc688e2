import os
import shutil
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.runtime import supervisor_environment


class Command(BaseCommand):
    help = ("Run supervisord in the foreground with every program from deploy/conf.d "
            "(web, workers, beat, flower). Ctrl-C stops them all cleanly.")

    def handle(self, *args, **options):
        base = Path(settings.BASE_DIR)
        run_dir = base / "run"
        environment = supervisor_environment(project_root=base, run_dir=run_dir)
        supervisord = shutil.which("supervisord", path=environment["PATH"])
        if supervisord is None:
            raise CommandError("supervisord not found: run `make install` first.")
        os.environ.update(environment)
        self.stdout.write(f"supervisord: web on 127.0.0.1:{environment['WEB_PORT']}, "
                          f"flower on 127.0.0.1:{environment['FLOWER_PORT']}, logs in {run_dir}/log")
        sys.stdout.flush()
        os.chdir(base)
        os.execv(supervisord, [supervisord, "--nodaemon", "-c", str(base / "deploy" / "supervisord.conf")])
