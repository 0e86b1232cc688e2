from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, Sum
from django.utils import timezone

from apps.reports.models import PeriodReport, Sale

ProgressCallback = Callable[[int, int], None]


def period_report_create(*, start_date: date, end_date: date) -> PeriodReport:
    """Store a report request and build it on the heavy worker after commit."""
    from apps.reports.tasks import build_period_report

    if end_date < start_date:
        raise ValueError("end_date must not be before start_date")
    report = PeriodReport.objects.create(start_date=start_date, end_date=end_date)
    build_period_report.delay_on_commit(report.pk)
    return report


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = timezone.make_aware(datetime.combine(day, time.min))
    return start, start + timedelta(days=1)


def period_report_build(
    *, report_id: int, on_progress: ProgressCallback | None = None
) -> PeriodReport:
    """Aggregate sales day by day, reporting progress after each day.

    Recomputes from scratch and overwrites, so running it twice (a redelivery)
    gives the same report.
    """
    report = PeriodReport.objects.get(pk=report_id)
    report.status = PeriodReport.Status.RUNNING
    report.save(update_fields=["status"])

    days = (report.end_date - report.start_date).days + 1
    per_day: dict[str, dict[str, str | int]] = {}
    total, count = Decimal("0"), 0
    for offset in range(days):
        day = report.start_date + timedelta(days=offset)
        start, end = _day_bounds(day)
        row = Sale.objects.filter(sold_at__gte=start, sold_at__lt=end).aggregate(
            n=Count("id"), amount=Sum("amount")
        )
        amount = row["amount"] or Decimal("0")
        per_day[day.isoformat()] = {"count": row["n"], "amount": str(amount)}
        total += amount
        count += row["n"]
        if on_progress:
            on_progress(offset + 1, days)

    report.per_day = per_day
    report.total_amount = total
    report.sale_count = count
    report.status = PeriodReport.Status.DONE
    report.finished_at = timezone.now()
    report.save()
    return report


def previous_period(*, days: int, today: date | None = None) -> tuple[date, date]:
    """The `days` full days before today (local time)."""
    today = today or timezone.localdate()
    return today - timedelta(days=days), today - timedelta(days=1)


def scheduled_report_get_or_create(*, days: int, today: date | None = None) -> PeriodReport:
    """The report for the previous `days` days; one per period even if beat's
    message is delivered twice."""
    start, end = previous_period(days=days, today=today)
    report, _ = PeriodReport.objects.get_or_create(start_date=start, end_date=end)
    return report
