"""List and re-queue dead letters.

    python manage.py dead_letters list [--limit 100] [--json]
    python manage.py dead_letters requeue <ID>
    python manage.py dead_letters requeue --all
    python manage.py dead_letters discard <ID>
"""

import json

from django.core.management.base import BaseCommand, CommandError
from kombu.exceptions import OperationalError

from queueworks.reliability.dead_letters import (
    dead_letter_discard,
    dead_letter_requeue,
    dead_letters_list,
)


class Command(BaseCommand):
    help = "List the dead-letter queue, re-queue dead letters to their original queue, or discard them."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="{list,requeue,discard}")
        listing = sub.add_parser("list", help="Show dead letters without removing them.")
        listing.add_argument("--limit", type=int, default=100)
        listing.add_argument("--json", action="store_true", help="One JSON document.")
        requeue = sub.add_parser("requeue", help="Publish dead letters back to their queue.")
        requeue.add_argument("id", nargs="?", help="The ID shown by `list`.")
        requeue.add_argument("--all", action="store_true", help="Re-queue every dead letter.")
        discard = sub.add_parser("discard", help="Delete a dead letter for good.")
        discard.add_argument("id", help="The ID shown by `list`.")

    def handle(self, *args, action, **options):
        try:
            if action == "list":
                return self._list(options["limit"], options["json"])
            if action == "requeue":
                return self._requeue(options.get("id"), options["all"])
            return self._discard(options["id"])
        except OperationalError as exc:
            raise CommandError(f"cannot reach the broker: {exc}") from exc

    def _list(self, limit, as_json):
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        letters = dead_letters_list(limit=limit)
        if as_json:
            self.stdout.write(json.dumps([letter.as_dict() for letter in letters], indent=2))
            return
        if not letters:
            self.stdout.write("No dead letters.")
            return
        header = f"{'ID':38} {'TASK':45} {'QUEUE':12} {'REASON':10} {'COUNT':5} DIED AT / DETAIL"
        self.stdout.write(header)
        for letter in letters:
            died = letter.died_at.isoformat(timespec="seconds") if letter.died_at else "-"
            self.stdout.write(
                f"{letter.id:38} {letter.task_name or '-':45} {letter.queue:12} "
                f"{letter.reason:10} {letter.count:<5} {died}"
            )
            if letter.detail:
                self.stdout.write(f"{'':38} {letter.detail}")
        self.stdout.write(f"{len(letters)} dead letter(s).")

    def _requeue(self, letter_id, requeue_all):
        if bool(letter_id) == bool(requeue_all):
            raise CommandError("requeue needs a dead-letter ID or --all (not both)")
        ids = dead_letter_requeue(dead_letter_id=letter_id, requeue_all=requeue_all)
        if letter_id and not ids:
            raise CommandError(f"no dead letter with ID {letter_id!r} (see `dead_letters list`)")
        for requeued in ids:
            self.stdout.write(f"re-queued {requeued}")
        self.stdout.write(f"{len(ids)} dead letter(s) re-queued.")

    def _discard(self, letter_id):
        removed = dead_letter_discard(dead_letter_id=letter_id)
        if not removed:
            raise CommandError(f"no dead letter with ID {letter_id!r} (see `dead_letters list`)")
        self.stdout.write(f"discarded {removed} dead letter(s) with ID {letter_id}.")
