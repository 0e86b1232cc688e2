from datetime import timedelta

from django.utils import timezone

from apps.doctor.models import BeatHeartbeat


def beat_heartbeats_recent(*, within: timedelta) -> list[BeatHeartbeat]:
    """Senders that beat at least twice and were seen within ``within``."""
    since = timezone.now() - within
    return list(BeatHeartbeat.objects.filter(last_seen__gte=since, beats__gte=2)
                .order_by("-last_seen"))


def beat_heartbeat_latest() -> BeatHeartbeat | None:
    return BeatHeartbeat.objects.order_by("-last_seen").first()
