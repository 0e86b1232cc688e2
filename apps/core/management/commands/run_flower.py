import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Start Flower on 127.0.0.1 behind Basic auth (FLOWER_BASIC_AUTH=user:password)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=5555)

    def handle(self, *args, port: int, **options):
        credentials = os.environ.get("FLOWER_BASIC_AUTH", "")
        if ":" not in credentials and not settings.DEBUG:
            raise CommandError(
                "FLOWER_BASIC_AUTH is not set (expected user:password); "
                "Flower will not run without authentication outside DEBUG."
            )
        run_dir = os.environ.get("RUN_DIR", str(settings.BASE_DIR / "run"))
        argv = ["celery", "-A", "projectname", "flower", "--address=127.0.0.1",
                f"--port={port}", "--persistent=True", f"--db={run_dir}/flower.db"]
        # Flower reads FLOWER_BASIC_AUTH from the environment itself, so the
        # password never appears in `ps`.
        os.execvp("celery", argv)
