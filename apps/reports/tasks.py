from celery import shared_task

from queueworks.core.callbacks import log_task_success, notify_operators_on_failure
from apps.reports.services import period_report_build, scheduled_report_get_or_create

PROGRESS = "PROGRESS"
# A report that fails (often at 06:30, from beat) mails the operators.
CALLBACKS = {"on_failure": notify_operators_on_failure, "on_success": log_task_success}


def _summary(report) -> dict:
    return {"report_id": report.pk, "sale_count": report.sale_count,
            "total_amount": str(report.total_amount)}


@shared_task(bind=True, **CALLBACKS)
def build_period_report(self, report_id: int) -> dict:
    def report_progress(current: int, total: int) -> None:
        self.update_state(state=PROGRESS, meta={"current": current, "total": total})

    return _summary(period_report_build(report_id=report_id, on_progress=report_progress))


@shared_task(**CALLBACKS)
def build_daily_report() -> dict:
    report = scheduled_report_get_or_create(days=1)
    return _summary(period_report_build(report_id=report.pk))


@shared_task(**CALLBACKS)
def build_weekly_report() -> dict:
    report = scheduled_report_get_or_create(days=7)
    return _summary(period_report_build(report_id=report.pk))
