"""Diagnostic tasks that show where work runs (used by tests and operators)."""

from celery import shared_task

from queueworks.core.services import probe_run


def _delivery_queue(request) -> str:
    return (request.delivery_info or {}).get("routing_key") or ""


@shared_task(bind=True)
def probe(self, token: str) -> dict:
    return probe_run(token=token, hostname=self.request.hostname, queue=_delivery_queue(self.request))


@shared_task(bind=True)
def heavy_probe(self, token: str, seconds: float = 1.0) -> dict:
    return probe_run(
        token=token, hostname=self.request.hostname,
        queue=_delivery_queue(self.request), seconds=seconds,
    )
