"""Alerts (wait time, no consumer, crash loop): conditions from the topology, delivery
through channels.

A channel is any class with ``send(incident, message)``; ``incident.closed_at``
is set when the message is the recovery.  The list comes from
``OPS_ALERT_CHANNELS`` (dotted paths).  Built in: a log line and an e-mail to
``OPERATOR_EMAILS`` through Django's mail backend.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.utils.module_loading import import_string
from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger("queueworks.ops.alerts")


class LogChannel:
    def send(self, incident, message: str) -> None:
        logger.warning("queue alert: %s", message)


class EmailChannel:
    def send(self, incident, message: str) -> None:
        subject = (f"[ops] {'program' if incident.kind == 'crash_loop' else 'queue'} "
                   f"{incident.queue}: {incident.get_kind_display().lower()}")
        if incident.closed_at is not None:
            subject = f"[ops] RESOLVED {subject.removeprefix('[ops] ')}"
        send_mail(
            subject,
            f"{message}\n\nOpened at {incident.opened_at.isoformat()}.\n"
            "You get one e-mail when an incident opens and one when it clears.",
            settings.DEFAULT_FROM_EMAIL, queueworks_settings.OPERATOR_EMAILS,
        )


def alert_channels() -> list:
    return [import_string(path)() for path in queueworks_settings.OPS_ALERT_CHANNELS]
