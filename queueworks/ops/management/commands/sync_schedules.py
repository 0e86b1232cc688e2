from django.core.management.base import BaseCommand

from queueworks.ops.services import schedules_sync


class Command(BaseCommand):
    help = ("Create/update the database beat entries (django-celery-beat) from the schedules in "
            "the project's topology (QUEUEWORKS_TOPOLOGY). Idempotent; keeps entries made in the admin; reports changes.")

    def handle(self, *args, **options):
        report = schedules_sync()
        for line in report.changes:
            self.stdout.write(line)
        for line in report.kept:
            self.stdout.write(line)
        if not report.changes:
            self.stdout.write("sync_schedules: no changes")
