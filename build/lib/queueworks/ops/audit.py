"""The audit log: record operator actions, read them back, prune old entries."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from queueworks.core.client_address import client_address
from queueworks.ops.models import AuditEntry
from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger(__name__)

# Every action the log knows, as stored in ``AuditEntry.action``.
ACTIONS = (
    "task.start", "task.cancel", "task.rerun", "task.bulk_start",
    "program.start", "program.stop", "program.restart", "program.invalid",
    "dead_letter.requeue", "dead_letter.discard",
    "schedule.create", "schedule.change", "schedule.delete", "schedule.sync",
)


def audit_record(*, action: str, target: str = "", outcome: str, request=None, user=None,
                 via: str = "", detail: dict[str, Any] | None = None) -> AuditEntry | None:
    """Write one entry; a failing write is logged, never breaks the action itself."""
    assert action in ACTIONS, action
    user = user if user is not None else getattr(request, "user", None)
    if user is not None and not user.is_authenticated:
        user = None
    try:
        return AuditEntry.objects.create(
            user=user, username=user.get_username() if user else "",
            address=client_address(request), action=action, target=str(target)[:255],
            outcome=outcome, detail=detail or {}, via=via,
        )
    except Exception:  # noqa: BLE001 - the action already happened; say so loudly
        logger.exception("audit: could not record %s %s (%s)", action, target, outcome)
        return None


@contextmanager
def audited(*, action: str, target: str = "", request=None, user=None, via: str = "",
            refused: tuple[type[BaseException], ...] = ()):
    """Record the block's outcome: ``ok``, ``refused`` for the ``refused``
    exceptions (bad input, conflicts), ``failed`` for any other; re-raises.

    The block may fill the yielded dict with details (new task ids...)."""
    detail: dict[str, Any] = {}
    try:
        yield detail
    except refused as exc:
        audit_record(action=action, target=target, outcome=AuditEntry.REFUSED, request=request,
                     user=user, via=via, detail={**detail, "error": str(getattr(exc, "detail", exc))})
        raise
    except Exception as exc:
        audit_record(action=action, target=target, outcome=AuditEntry.FAILED, request=request,
                     user=user, via=via, detail={**detail, "error": str(getattr(exc, "detail", exc))})
        raise
    audit_record(action=action, target=target, outcome=AuditEntry.OK, request=request,
                 user=user, via=via, detail=detail)


def audit_recent(*, limit: int = 30) -> list[AuditEntry]:
    return list(AuditEntry.objects.all()[:limit])


def audit_prune(*, now: datetime | None = None) -> int:
    """Delete entries older than ``OPS_AUDIT_RETENTION_DAYS``; returns how many."""
    days = queueworks_settings.OPS_AUDIT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted, _ = AuditEntry.objects.filter(at__lt=cutoff).delete()
    logger.info("audit: pruned %d entries older than %s", deleted, cutoff)
    return deleted
