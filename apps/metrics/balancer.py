"""The queue balancer's decisions as a counter, read from the balancer's model.

The balancer records each move it makes as a row of the model named by
``METRICS_BALANCER_DECISION_MODEL`` ("app_label.ModelName", by default
``balancer.BalanceDecision``): ``program``, ``processes_before``,
``processes_after`` and ``outcome`` (applied, or refused by the worker).
Counted per program, direction ("grow"/"shrink") and outcome.  Without that
model installed the counter has no samples; nothing else changes.
"""

from __future__ import annotations

from django.apps import apps as django_apps
from django.conf import settings
from django.db.models import Case, CharField, Count, F, Value, When

LABELS = ("program", "direction", "outcome")


def decision_model():
    try:
        return django_apps.get_model(settings.METRICS_BALANCER_DECISION_MODEL)
    except (LookupError, ValueError):
        return None


def decision_counts() -> list[tuple[dict[str, str], int]]:
    """(labels, decisions) per program, direction and outcome; empty without the model."""
    model = decision_model()
    if model is None:
        return []
    rows = (model.objects
            .annotate(direction=Case(
                When(processes_after__gt=F("processes_before"), then=Value("grow")),
                When(processes_after__lt=F("processes_before"), then=Value("shrink")),
                default=Value("hold"), output_field=CharField()))
            .values(*LABELS).annotate(decisions=Count("pk")).order_by(*LABELS))
    return [({name: str(row[name]) for name in LABELS}, row["decisions"]) for row in rows]
