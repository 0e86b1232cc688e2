"""The row lock every decision about one (limit, key) takes first."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F

from queueworks.limits.models import LimitKey


def limit_key_lock(*, limit: str, key: str) -> None:
    """Lock the (limit, key) row; call inside ``transaction.atomic``.

    The lock is taken by an UPDATE, not a read: on PostgreSQL it holds the row
    until the transaction ends (other hosts wait on it); on SQLite a write as
    the first statement takes the database's write lock at once, so two
    processes never both read and then fail to upgrade to a write.
    """
    rows = LimitKey.objects.filter(limit=limit, key=key)
    if not rows.update(tat=F("tat")):
        try:
            with transaction.atomic():
                LimitKey.objects.create(limit=limit, key=key)
        except IntegrityError:  # another process created it first: lock theirs
            rows.update(tat=F("tat"))


def limit_key_locked(*, limit: str, key: str) -> LimitKey:
    """Lock and return the (limit, key) row (see ``limit_key_lock``)."""
    limit_key_lock(limit=limit, key=key)
    return LimitKey.objects.get(limit=limit, key=key)
