from celery import shared_task

from queueworks.ops.services import alerts_check


@shared_task(ignore_result=True)
def alerts_evaluate_every_minute() -> None:
    """Beat's entry "ops-alerts": alerts fire with nobody on the dashboard."""
    alerts_check()
