"""The queue balancer's decisions as a counter, read from the balancer's model.

The balancer records each move it makes as a row of the model named by
``METRICS_BALANCER_DECISION_MODEL`` ("app_label.ModelName").  Counted here
per ``program`` (when the model has that field) and per ``direction``: "grow"
or "shrink" from its ``before``/``after`` process counts (when it has them),
else its ``action`` field.  Without that model installed the counter has no
samples; nothing else changes.
"""

from __future__ import annotations

from django.apps import apps as django_apps
from django.conf import settings
from django.db.models import Case, CharField, Count, F, Value, When

DEFAULT_MODEL = "balancer.BalancerDecision"


def decision_model():
    label = getattr(settings, "METRICS_BALANCER_DECISION_MODEL", DEFAULT_MODEL)
    try:
        return django_apps.get_model(label)
    except (LookupError, ValueError):
        return None


def decision_counts() -> list[tuple[dict[str, str], int]]:
    """(labels, decisions) per program and direction; empty without the model."""
    model = decision_model()
    if model is None:
        return []
    fields = {f.name for f in model._meta.get_fields()}
    queryset = model.objects.all()
    group = []
    if "program" in fields:
        group.append("program")
    if {"before", "after"} <= fields:
        queryset = queryset.annotate(direction=Case(
            When(after__gt=F("before"), then=Value("grow")),
            When(after__lt=F("before"), then=Value("shrink")),
            default=Value("hold"), output_field=CharField()))
        group.append("direction")
    elif "action" in fields:
        queryset = queryset.annotate(direction=F("action"))
        group.append("direction")
    rows = queryset.values(*group).annotate(decisions=Count("pk")).order_by(*group)
    return [({name: str(row[name]) for name in group}, row["decisions"]) for row in rows]
