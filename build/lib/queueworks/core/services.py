"""Diagnostic probes: record which worker and queue ran a task."""

import time

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from queueworks.core.models import ProbeRun


def probe_start(*, token: str, hostname: str, queue: str) -> ProbeRun:
    with transaction.atomic():
        run, created = ProbeRun.objects.get_or_create(
            token=token,
            defaults={"hostname": hostname, "queue": queue, "started_at": timezone.now()},
        )
        ProbeRun.objects.filter(pk=run.pk).update(deliveries=F("deliveries") + 1)
    return run


def probe_finish(*, token: str) -> None:
    ProbeRun.objects.filter(token=token, finished_at__isnull=True).update(
        finished_at=timezone.now()
    )


def probe_run(*, token: str, hostname: str, queue: str, seconds: float = 0) -> dict:
    probe_start(token=token, hostname=hostname, queue=queue)
    if seconds:
        time.sleep(seconds)
    probe_finish(token=token)
    return {"token": token, "hostname": hostname, "queue": queue}
