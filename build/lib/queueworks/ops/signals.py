"""Signal handlers of the operations app."""

import time


def stamp_publish_time(sender=None, properties=None, **kwargs) -> None:
    """Set the AMQP ``timestamp`` property (seconds) on every task message.

    RabbitMQ reports the oldest ready message's timestamp as
    ``head_message_timestamp``; the dashboard and the wait-time alerts use it.
    """
    if properties is not None:
        properties.setdefault("timestamp", int(time.time()))


def prune_audit_after_backend_cleanup(sender=None, **kwargs) -> None:
    """Celery's daily ``celery.backend_cleanup`` (a topology schedule) also
    prunes the audit log, so its retention holds without a cron entry."""
    if getattr(sender, "name", None) == "celery.backend_cleanup":
        from queueworks.ops.audit import audit_prune

        audit_prune()
