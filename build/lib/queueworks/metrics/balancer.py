"""The queue balancer's decisions (``balancer.BalanceDecision``) as a counter:
per program, direction ("grow"/"shrink") and outcome (applied, or refused by
the worker)."""

from __future__ import annotations

from django.db.models import Case, CharField, Count, F, Value, When

from queueworks.balancer.models import BalanceDecision

LABELS = ("program", "direction", "outcome")


def decision_counts() -> list[tuple[dict[str, str], int]]:
    """(labels, decisions) per program, direction and outcome."""
    rows = (BalanceDecision.objects
            .annotate(direction=Case(
                When(processes_after__gt=F("processes_before"), then=Value("grow")),
                When(processes_after__lt=F("processes_before"), then=Value("shrink")),
                default=Value("hold"), output_field=CharField()))
            .values(*LABELS).annotate(decisions=Count("pk")).order_by(*LABELS))
    return [({name: str(row[name]) for name in LABELS}, row["decisions"]) for row in rows]
