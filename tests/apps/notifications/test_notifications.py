from datetime import timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

from apps.notifications.models import Notification
from apps.notifications.services import (
    notification_create, notification_send, office_hours_reminders_send,
)
from tests.support.broker import published_tasks
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


class _RolledBack(Exception):
    pass


def _notification_sends(published, notification_id=None):
    return [p for p in published if p.task == "apps.notifications.tasks.send_notification"
            and (notification_id is None or p.args == [notification_id])]


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_nothing_is_enqueued_when_the_transaction_rolls_back(broker_vhost):
    with published_tasks() as published:
        with pytest.raises(_RolledBack), transaction.atomic():
            rolled_back = notification_create(recipient="a@example.com", subject="s", body="b")
            raise _RolledBack
        assert not Notification.objects.filter(pk=rolled_back.pk).exists()
        assert _notification_sends(published) == []
        # Control: the same call committed is published once, with its id.
        with transaction.atomic():
            committed = notification_create(recipient="b@example.com", subject="s", body="b")
        assert [p.args for p in _notification_sends(published)] == [[committed.pk]]


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_notification_is_mailed_by_the_main_worker(live_system):
    with published_tasks() as published:
        notification = notification_create(recipient="ann@example.com", subject="Welcome",
                                           body="Hello Ann")
    [sent] = _notification_sends(published, notification.pk)

    wait_for(lambda: Notification.objects.get(pk=notification.pk).sent_at, 30,
             message="notification sent")
    # This call's task, by the worker its queue belongs to.
    result = wait_for(lambda: TaskResult.objects.filter(task_id=sent.id, status="SUCCESS").first(),
                      30, message=f"result of send_notification {sent.id}")
    assert result.worker == live_system.node("main_worker"), result.worker
    mails = list((live_system.run_dir / "mail").glob("*.log"))
    assert any("Subject: Welcome" in path.read_text() for path in mails)
