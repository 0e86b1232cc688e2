from django.conf import settings
from django.core.management.base import BaseCommand

from queueworks.ops.audit import audit_prune
from queueworks.conf import settings as queueworks_settings


class Command(BaseCommand):
    help = ("Delete audit log entries older than OPS_AUDIT_RETENTION_DAYS "
            "(beat's daily celery.backend_cleanup does it too).")

    def handle(self, *args, **options):
        deleted = audit_prune()
        self.stdout.write(f"deleted {deleted} audit entries older than "
                          f"{queueworks_settings.OPS_AUDIT_RETENTION_DAYS} days")
