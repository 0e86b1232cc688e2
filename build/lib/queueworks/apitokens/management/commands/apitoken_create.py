from datetime import timedelta

from django.core.management.base import BaseCommand

from queueworks.apitokens.management import positive, user_named
from queueworks.apitokens.services import api_token_create


class Command(BaseCommand):
    help = ("Create an API token for a user and print its key (shown once: only a hash "
            "is stored). It expires after --days (default REST_KNOX['TOKEN_TTL']).")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="default", help="what the token is for")
        parser.add_argument("--days", type=int, help="days until it expires")

    def handle(self, *args, username, name, days, **options):
        user = user_named(username)
        ttl = {} if positive("--days", days) is None else {"ttl": timedelta(days=days)}
        token, key = api_token_create(user=user, name=name, **ttl)
        self.stdout.write(f"{key}\n(token {name!r} of {username}, expires "
                          f"{token.expiry.isoformat() if token.expiry else 'never'})")
