from django.core.management.base import BaseCommand, CommandError

from queueworks.ops.broker import BrokerStatsError, queue_stats
from queueworks.ops.services import alerts_evaluate
from queueworks.conf import TOPOLOGY


class Command(BaseCommand):
    help = ("Evaluate the queue wait-time alerts once (as every /ops/ refresh does) and send "
            "notifications for new incidents. For cron when nobody has the dashboard open.")

    def handle(self, *args, **options):
        try:
            stats = queue_stats(TOPOLOGY.queue_names())
        except BrokerStatsError as exc:
            raise CommandError(str(exc)) from exc
        incidents = alerts_evaluate(stats=stats)
        for incident in incidents:
            self.stdout.write(f"OPEN {incident.queue} {incident.kind}: {incident.detail}")
        if not incidents:
            self.stdout.write("no open incidents")
