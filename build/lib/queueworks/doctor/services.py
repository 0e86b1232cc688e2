from django.db import transaction
from django.db.models import F
from django.utils import timezone

from queueworks.doctor.models import BeatHeartbeat


def beat_heartbeat_record(*, origin: str, broker: str = "") -> BeatHeartbeat:
    """Record one heartbeat from the beat process ``origin`` via ``broker``."""
    now = timezone.now()
    with transaction.atomic():
        heartbeat, created = BeatHeartbeat.objects.get_or_create(
            origin=origin, broker=broker, defaults={"first_seen": now, "last_seen": now, "beats": 1},
        )
        if not created:
            BeatHeartbeat.objects.filter(pk=heartbeat.pk).update(
                last_seen=now, beats=F("beats") + 1,
            )
    return heartbeat
