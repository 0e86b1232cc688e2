from django.core.management.base import BaseCommand

from queueworks.apitokens.management import user_named
from queueworks.apitokens.services import api_token_revoke


class Command(BaseCommand):
    help = "Revoke a user's API tokens of one name (every one of that name); they stop at once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True)

    def handle(self, *args, username, name, **options):
        revoked = api_token_revoke(user=user_named(username), name=name)
        self.stdout.write(f"revoked {revoked} token(s) {name!r} of {username}")
