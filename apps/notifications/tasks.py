from celery import shared_task

from apps.notifications.services import notification_send, office_hours_reminders_send


@shared_task
def send_notification(notification_id: int) -> bool:
    return notification_send(notification_id=notification_id)


@shared_task
def send_office_hours_reminders() -> int:
    return office_hours_reminders_send()
