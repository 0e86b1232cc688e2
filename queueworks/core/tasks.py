"""Diagnostic tasks that show where work runs (used by tests and operators)."""

import re

from celery import shared_task
from kombu.transport.native_delayed_delivery import MAX_NUMBER_OF_BITS_TO_USE

from queueworks.core.services import probe_run

# On quorum queues a countdown travels through Celery's native delayed
# delivery, which prefixes the routing key with the delay in binary
# ("0.0.<...>.1.0.main_worker"); the queue is what follows.
_DELAY_PREFIX = re.compile(r"^(?:[01]\.){%d}" % MAX_NUMBER_OF_BITS_TO_USE)


def delivery_queue(request) -> str:
    """The queue a task's message was routed to (its routing key, the queue's
    name in this topology), without a delayed-delivery prefix."""
    return _DELAY_PREFIX.sub("", (request.delivery_info or {}).get("routing_key") or "")


@shared_task(bind=True)
def probe(self, token: str) -> dict:
    return probe_run(token=token, hostname=self.request.hostname, queue=delivery_queue(self.request))


@shared_task(bind=True)
def heavy_probe(self, token: str, seconds: float = 1.0) -> dict:
    return probe_run(
        token=token, hostname=self.request.hostname,
        queue=delivery_queue(self.request), seconds=seconds,
    )
