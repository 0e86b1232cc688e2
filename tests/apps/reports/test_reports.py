from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult

from apps.reports.models import PeriodReport, Sale
from apps.reports.services import (
    period_report_build, period_report_create, scheduled_report_get_or_create,
)
from tests.support.broker import published_tasks
from tests.support.live import wait_for


def _sale(day: date, hour: int, amount: str):
    Sale.objects.create(amount=Decimal(amount),
                        sold_at=timezone.make_aware(datetime.combine(day, time(hour))))


@pytest.mark.django_db
def test_build_aggregates_per_local_day_and_reports_progress():
    _sale(date(2026, 11, 2), 0, "10.00")   # just after local midnight
    _sale(date(2026, 11, 2), 23, "5.50")
    _sale(date(2026, 11, 4), 12, "1.25")
    _sale(date(2026, 11, 5), 12, "99.00")  # outside the period
    report = PeriodReport.objects.create(start_date=date(2026, 11, 2), end_date=date(2026, 11, 4))
    progress = []

    built = period_report_build(report_id=report.pk, on_progress=lambda c, t: progress.append((c, t)))

    assert built.status == PeriodReport.Status.DONE
    assert built.sale_count == 3
    assert built.total_amount == Decimal("16.75")
    assert built.per_day["2026-11-03"] == {"count": 0, "amount": "0"}
    assert progress == [(1, 3), (2, 3), (3, 3)]
    # Rebuilding (a redelivery) gives the same report.
    assert period_report_build(report_id=report.pk).total_amount == Decimal("16.75")


@pytest.mark.django_db
def test_scheduled_report_is_one_per_period():
    today = date(2026, 11, 23)
    first = scheduled_report_get_or_create(days=7, today=today)
    again = scheduled_report_get_or_create(days=7, today=today)
    assert first.pk == again.pk
    assert (first.start_date, first.end_date) == (date(2026, 11, 16), date(2026, 11, 22))


@pytest.mark.django_db
def test_end_before_start_is_refused():
    with pytest.raises(ValueError, match="end_date"):
        period_report_create(start_date=date(2026, 11, 2), end_date=date(2026, 11, 1))


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_report_is_built_by_the_heavy_worker(live_system):
    start = date(2026, 10, 1)
    for offset in range(30):
        _sale(start + timedelta(days=offset), 12, "2.00")
    with published_tasks() as published:
        report = period_report_create(start_date=start, end_date=start + timedelta(days=29))
    [build] = [p for p in published if p.task == "apps.reports.tasks.build_period_report"]
    assert build.args == [report.pk]

    done = wait_for(lambda: PeriodReport.objects.filter(pk=report.pk, status="done").first(), 60,
                    message="report built")
    assert done.sale_count == 30 and done.total_amount == Decimal("60.00")
    # This call's task, not any build_period_report that succeeded before.
    result = wait_for(lambda: TaskResult.objects.filter(task_id=build.id, status="SUCCESS").first(),
                      30, message=f"result of build_period_report {build.id}")
    assert result.worker == live_system.node("heavy_worker")
