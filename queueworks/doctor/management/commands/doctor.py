import json
import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from queueworks.doctor.diagnosis import FAIL, WARN, diagnose
from queueworks.conf import project_root


class Command(BaseCommand):
    help = ("Check the running task system end to end (broker, queues and their consumers, "
            "worker programs, beat, result backend, time zones, modes, credentials). "
            "One line per finding with the fix; exit status 1 when anything FAILs.")
    # Doctor reports failing system checks itself instead of refusing to run.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print findings as JSON.")
        parser.add_argument(
            "--run-dir", default=os.environ.get("RUN_DIR", str(project_root() / "run")),
            help="Directory holding supervisor.sock (default: $RUN_DIR or run/).",
        )
        parser.add_argument(
            "--host", default=os.environ.get("DEPLOY_HOST") or None,
            help="With an inventory (QUEUEWORKS_INVENTORY): the host this runs on; programs "
                 "declared on other hosts are judged there (default: $DEPLOY_HOST).")
        parser.add_argument("--timeout", type=float, default=3.0,
                            help="Seconds to wait for the broker and for worker replies.")

    def handle(self, *args, json: bool = False, run_dir: str, timeout: float,
               host: str | None = None, **options):
        if timeout <= 0:
            raise CommandError("--timeout must be a positive number of seconds.")
        findings = diagnose(broker_url=settings.CELERY_BROKER_URL, run_dir=Path(run_dir),
                            timeout=timeout, debug=settings.DEBUG, host=host)
        failed = [f for f in findings if f.status == FAIL]
        if json:
            self.stdout.write(_json.dumps({
                "ok": not failed,
                "summary": {s: sum(f.status == s for f in findings) for s in ("OK", WARN, FAIL)},
                "findings": [f.as_dict() for f in findings],
            }, indent=2))
        else:
            for finding in findings:
                style = {FAIL: self.style.ERROR, WARN: self.style.WARNING}.get(
                    finding.status, self.style.SUCCESS)
                self.stdout.write(style(finding.line()))
            self.stdout.write(f"{len(findings)} checks: {len(failed)} FAIL, "
                              f"{sum(f.status == WARN for f in findings)} WARN")
        if failed:
            raise SystemExit(1)


_json = json
