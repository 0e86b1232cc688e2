from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from apps.notifications.models import Notification
from apps.notifications.selectors import notifications_unsent


def notification_create(*, recipient: str, subject: str, body: str) -> Notification:
    """Store a notification and send it from a worker once the row is committed."""
    from apps.notifications.tasks import send_notification

    notification = Notification.objects.create(recipient=recipient, subject=subject, body=body)
    # After commit: the worker must find the row, and a rolled-back request
    # must not send anything.
    send_notification.delay_on_commit(notification.pk)
    return notification


def notification_send(*, notification_id: int) -> bool:
    """Send one notification; returns False when it was already sent."""
    with transaction.atomic():
        notification = Notification.objects.select_for_update().get(pk=notification_id)
        if notification.sent_at is not None:
            return False
        send_mail(
            notification.subject, notification.body,
            settings.DEFAULT_FROM_EMAIL, [notification.recipient],
        )
        notification.sent_at = timezone.now()
        notification.save(update_fields=["sent_at"])
    return True


def office_hours_reminders_send(*, older_than: timedelta = timedelta(minutes=30)) -> int:
    """Mail operators a reminder about notifications stuck unsent; returns the count."""
    stuck = notifications_unsent(older_than=older_than).count()
    if stuck:
        send_mail(
            f"{stuck} notification(s) still unsent",
            f"{stuck} notification(s) have been waiting more than {older_than}.",
            settings.DEFAULT_FROM_EMAIL, settings.OPERATOR_EMAILS,
        )
    return stuck
