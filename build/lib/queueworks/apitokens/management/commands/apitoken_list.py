from django.core.management.base import BaseCommand

from queueworks.apitokens.management import user_named
from queueworks.apitokens.selectors import api_tokens_list


class Command(BaseCommand):
    help = "List API tokens (user, name, created, expiry; keys are not stored)."

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="?", help="only this user's tokens")

    def handle(self, *args, username, **options):
        user = user_named(username) if username else None
        self.stdout.write(f"{'user':<20} {'name':<24} {'created':<25} expires")
        for token in api_tokens_list(user=user):
            expires = token.expiry.isoformat(timespec="seconds") if token.expiry else "never"
            self.stdout.write(f"{token.user.get_username():<20} {token.name:<24} "
                              f"{token.created.isoformat(timespec='seconds'):<25} {expires}")
