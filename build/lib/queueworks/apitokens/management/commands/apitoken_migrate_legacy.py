from django.apps import apps
from django.core.management.base import BaseCommand

from queueworks.apitokens.services import legacy_tokens_convert


class Command(BaseCommand):
    help = ("Convert every DRF authtoken key still stored in clear into a hashed API token "
            "(same key, named 'legacy', expiring REST_KNOX['TOKEN_TTL'] from now) and delete "
            "the clear row.")

    def handle(self, *args, **options):
        if not apps.is_installed("rest_framework.authtoken"):
            self.stdout.write("converted 0 tokens (rest_framework.authtoken is not installed)")
            return
        self.stdout.write(f"converted {legacy_tokens_convert()} tokens")
