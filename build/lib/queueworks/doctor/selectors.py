from datetime import timedelta

from django.utils import timezone

from queueworks.doctor.models import BeatHeartbeat


def beat_heartbeats_recent(*, within: timedelta, broker: str = "") -> list[BeatHeartbeat]:
    """Senders via ``broker`` that beat at least twice and were seen within ``within``."""
    since = timezone.now() - within
    return list(BeatHeartbeat.objects.filter(last_seen__gte=since, beats__gte=2, broker=broker)
                .order_by("-last_seen"))


def beat_heartbeat_latest(*, broker: str = "") -> BeatHeartbeat | None:
    return BeatHeartbeat.objects.filter(broker=broker).order_by("-last_seen").first()
