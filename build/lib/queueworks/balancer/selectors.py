"""Reads of the balancer's records (the /ops/ panel)."""

from __future__ import annotations

from queueworks.balancer.models import BalanceDecision

PANEL_ROWS = 15


def balance_decisions_recent(*, limit: int = PANEL_ROWS) -> list[BalanceDecision]:
    return list(BalanceDecision.objects.all()[:limit])
