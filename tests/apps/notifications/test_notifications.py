from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.notifications.models import Notification
from apps.notifications.services import (
    notification_create, notification_send, office_hours_reminders_send,
)
from tests.support.live import wait_for


@pytest.mark.django_db
def test_send_is_idempotent():
    notification = Notification.objects.create(recipient="a@example.com", subject="s", body="b")
    assert notification_send(notification_id=notification.pk) is True
    assert notification_send(notification_id=notification.pk) is False  # redelivery
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["a@example.com"]


@pytest.mark.django_db
def test_reminders_count_only_stuck_notifications():
    Notification.objects.create(recipient="a@example.com", subject="fresh", body="b")
    stuck = Notification.objects.create(recipient="b@example.com", subject="old", body="b")
    Notification.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert office_hours_reminders_send(older_than=timedelta(minutes=30)) == 1
    assert "1 notification(s)" in mail.outbox[0].subject


@pytest.mark.django_db
def test_nothing_is_enqueued_when_the_transaction_rolls_back(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notification_create(recipient="a@example.com", subject="s", body="b")
    assert len(callbacks) == 1  # the publish waits for the commit


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_notification_is_mailed_by_the_main_worker(live_system):
    notification = notification_create(recipient="ann@example.com", subject="Welcome", body="Hello Ann")

    sent = wait_for(lambda: Notification.objects.get(pk=notification.pk).sent_at, 30,
                    message="notification sent")
    assert sent is not None
    mails = list((live_system.run_dir / "mail").glob("*.log"))
    assert any("Subject: Welcome" in path.read_text() for path in mails)
