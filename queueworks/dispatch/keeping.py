"""Messages the publisher keeps unsent while the broker cannot be reached.

``ConfirmingPublisher.publish(..., keep_for=seconds)``
(queueworks/dispatch/publisher.py): when no connection can be opened now, the
message stays among the unconfirmed ones instead of being forgotten, the
publisher's background thread sends it with the others once it reconnects,
and the caller hears ``PublishDeferred``.  A kept message that was never
written within ``keep_for`` is dropped: its owner publishes it instead (for
a recorded task the outbox sweeper, which takes only records older than its
bound, longer than ``keep_for``), so the two never both hold it.  One that
was written is kept until confirmed, like every other message.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("queueworks.dispatch.publisher")

# Most messages kept unsent at once; beyond it a publish raises as without keep_for.
MAX_KEPT_UNSENT = 10_000


class PublishDeferred(Exception):
    """The broker could not be reached now; the message is kept unsent for
    ``keep_for`` seconds and sent by the background thread once it reconnects."""


class KeptUnsent:
    """The publisher's side of ``keep_for`` (its lock, ``_pending`` and reader)."""

    def _keep_or_forget(self, seq: int, keep_for: float | None, error: Exception) -> None:
        """Lock held: the broker cannot be reached now.  Raises either way."""
        kept = sum(entry.drop_at is not None and not entry.written
                   for entry in self._pending.values())
        if keep_for is None or kept >= MAX_KEPT_UNSENT:
            self._pending.pop(seq, None)  # unreachable: the caller hears it now
            raise error
        self._pending[seq].drop_at = time.monotonic() + keep_for
        self._start_reader()
        raise PublishDeferred(
            f"the broker could not be reached ({error.__class__.__name__}: {error}); the "
            f"message is kept and sent once it can be, for up to {keep_for:g}s") from error

    def _drop_expired(self) -> None:
        """Drop kept messages never written within their ``keep_for``."""
        from queueworks.dispatch.publisher import _task_ids

        now = time.monotonic()
        with self._lock:
            expired = [seq for seq, entry in self._pending.items()
                       if entry.drop_at is not None and not entry.written
                       and entry.drop_at <= now]
            entries = [self._pending.pop(seq) for seq in expired]
            if entries:
                self._settled.notify_all()
        if entries:
            logger.warning("Dropped %d task messages kept unsent while the broker could not "
                           "be reached (their owner publishes them): %s", len(entries),
                           _task_ids(entries))
