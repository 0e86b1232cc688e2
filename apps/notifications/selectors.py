from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from apps.notifications.models import Notification


def notifications_unsent(*, older_than: timedelta = timedelta(0)) -> QuerySet[Notification]:
    return Notification.objects.filter(
        sent_at__isnull=True, created_at__lte=timezone.now() - older_than
    )
