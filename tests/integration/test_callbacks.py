"""on_failure / on_success callbacks run in the real worker: a failed report mails the operators."""

import email
import email.policy
from datetime import date

import pytest
from django.conf import settings

from apps.reports.models import PeriodReport
from apps.reports.tasks import build_period_report
from tests.support.live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
MAIL_SEPARATOR = "\n" + "-" * 79


def _mails_mentioning(run_dir, text: str) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted((run_dir / "mail").glob("*.log")):
        for raw in path.read_text().split(MAIL_SEPARATOR):
            if text in raw:
                found.append(email.message_from_string(raw.strip(), policy=email.policy.default))
    return found


def test_a_failed_report_mails_the_operators(live_system):
    missing_id = 987_654_321
    result = build_period_report.delay(missing_id)
    result.get(timeout=60, propagate=False)
    assert result.state == "FAILURE"

    [mail] = wait_for(lambda: _mails_mentioning(live_system.run_dir, result.id), 30,
                      message="failure mail")
    assert mail["To"] == ", ".join(settings.QUEUEWORKS_OPERATOR_EMAILS)
    assert mail["Subject"].startswith("[tasks] apps.reports.tasks.build_period_report failed: DoesNotExist")
    body = mail.get_content()
    assert f"Args:     [{missing_id}]" in body
    assert f"Worker:   {live_system.node('heavy_worker')}" in body
    assert "period_report_build" in body  # the traceback's last lines


def test_a_successful_report_is_logged_and_mails_nobody(live_system):
    report = PeriodReport.objects.create(start_date=date(2024, 1, 1), end_date=date(2024, 1, 3))
    result = build_period_report.delay(report.pk)
    assert result.get(timeout=60)["report_id"] == report.pk

    log = live_system.run_dir / "log" / "heavy_worker.log"
    line = wait_for(lambda: next((l for l in log.read_text().splitlines()
                                  if result.id in l and "succeeded on" in l), None),
                    30, message="success log line")
    assert f"task apps.reports.tasks.build_period_report[{result.id}] succeeded on " \
           f"{live_system.node('heavy_worker')}" in line
    assert f"'report_id': {report.pk}" in line
    assert _mails_mentioning(live_system.run_dir, result.id) == []
