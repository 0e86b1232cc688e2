"""Writes of the balancer: its decisions."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from queueworks.balancer.models import BalanceDecision

# Decisions older than this are removed as new ones are recorded.
KEEP_DAYS = 30


def balance_decision_record(*, host: str, program: str, queues: tuple[str, ...], before: int,
                            after: int, reason: str, error: str = "",
                            decided_at: datetime | None = None) -> BalanceDecision:
    decision = BalanceDecision.objects.create(
        created_at=decided_at or timezone.now(), host=host, program=program, queues=",".join(queues), processes_before=before,
        processes_after=after, reason=reason, error=error,
        outcome=BalanceDecision.REFUSED if error else BalanceDecision.APPLIED,
    )
    BalanceDecision.objects.filter(
        created_at__lt=timezone.now() - timedelta(days=KEEP_DAYS)).delete()
    return decision
