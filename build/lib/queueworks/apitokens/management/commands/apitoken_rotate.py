from datetime import timedelta

from django.core.management import CommandError
from django.core.management.base import BaseCommand

from queueworks.apitokens.management import user_named
from queueworks.apitokens.models import ApiToken
from queueworks.apitokens.services import api_token_rotate


class Command(BaseCommand):
    help = ("Replace a user's token of one name by a new one and print the new key; the old "
            "key stops working after --grace-minutes (at once by default).")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True)
        parser.add_argument("--grace-minutes", type=int, default=0)

    def handle(self, *args, username, name, grace_minutes, **options):
        if grace_minutes < 0:
            raise CommandError(f"--grace-minutes must not be negative, not {grace_minutes}")
        user = user_named(username)
        try:
            token, key = api_token_rotate(user=user, name=name,
                                          grace=timedelta(minutes=grace_minutes))
        except ApiToken.DoesNotExist:
            raise CommandError(f"--name: {username} has no token called {name!r} "
                               "(manage.py apitoken_list shows them)") from None
        self.stdout.write(f"{key}\n(token {name!r} of {username}, expires "
                          f"{token.expiry.isoformat() if token.expiry else 'never'}; the old "
                          f"key stops {'in %d minutes' % grace_minutes if grace_minutes else 'now'})")
