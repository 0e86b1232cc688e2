from celery import shared_task

from queueworks.doctor.broker import broker_identity
from queueworks.doctor.services import beat_heartbeat_record


@shared_task(bind=True, ignore_result=True)
def beat_heartbeat(self) -> None:
    """Sent by beat on a short interval; `manage.py doctor` reads the result.

    It travels the whole path (beat -> broker -> worker -> database), so a
    recent heartbeat proves beat is ticking and its messages are consumed.
    """
    beat_heartbeat_record(origin=self.request.origin or "unknown",
                          broker=broker_identity(self.app.conf.broker_url))
