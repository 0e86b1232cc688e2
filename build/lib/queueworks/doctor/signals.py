"""Workers and beat log the RabbitMQ-only guarantees Redis cannot give, at start."""

import logging

from celery.signals import beat_init, worker_ready

logger = logging.getLogger("queueworks.doctor")


def log_broker_warnings(**kwargs) -> list[str]:
    from django.conf import settings

    from queueworks.doctor.broker import rabbitmq_only_guarantees
    from queueworks.conf import TOPOLOGY

    problems = rabbitmq_only_guarantees(
        broker_url=settings.CELERY_BROKER_URL, topology=TOPOLOGY,
        transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None),
    )
    for text in problems:
        logger.warning("RabbitMQ-only guarantee on a Redis broker: %s", text)
    return problems


worker_ready.connect(log_broker_warnings, weak=False)
beat_init.connect(log_broker_warnings, weak=False)
