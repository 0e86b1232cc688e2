"""The workers' state (one inspect broadcast), shared by every web process.

``GET /api/v1/workers/`` and ``/ops/`` read the last snapshot from the shared
cache (a database table) and never wait for the broadcast: when the
snapshot is older than ``TASKAPI_WORKERS_SNAPSHOT_SECONDS`` the first request
to notice takes a cross-process lock (``cache.add``: one INSERT wins) and
refreshes it in a background thread; everyone, that request included, gets
the current snapshot at once with its age.  Only when no snapshot exists at
all (a fresh installation, a culled cache) does a request wait for the
first one, at most ``COLD_WAIT_SECONDS``.

The snapshot is stored as the API's JSON body, rendered once per refresh:
``GET /api/v1/workers/`` sends those bytes as they are, and only the
dashboard and the metrics decode them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections
from rest_framework.renderers import JSONRenderer

from queueworks.taskapi.errors import BrokerUnavailable
from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger(__name__)

KEY = "taskapi:workers-snapshot"
LOCK = "taskapi:workers-snapshot-refresh"
# Enough for a ping and the five inspect calls of ``worker_list`` to time out.
COLD_WAIT_SECONDS = 10.0

_in_flight = threading.Lock()  # one refresh thread per process at most


@dataclass(frozen=True)
class WorkersSnapshot:
    body: bytes | None  # the workers as the API's JSON; None: the broker could not be asked
    error: str
    taken_at: float

    @cached_property
    def workers(self) -> list[dict[str, Any]] | None:
        """Decoded once, for the readers that need the structure."""
        return None if self.body is None else json.loads(self.body)

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.taken_at)


def store_snapshot(workers: list[dict[str, Any]] | None, *, error: str = "",
                   taken_at: float | None = None) -> WorkersSnapshot:
    """Render ``workers`` (None: the broker could not be asked, ``error`` says why) and
    share them with every web process."""
    body = None if workers is None else JSONRenderer().render(workers)
    snapshot = WorkersSnapshot(body=body, error=error,
                               taken_at=time.time() if taken_at is None else taken_at)
    cache.set(KEY, {"body": body, "error": error, "taken_at": snapshot.taken_at}, timeout=None)
    return snapshot


def _stored() -> WorkersSnapshot | None:
    data = cache.get(KEY)
    if not isinstance(data, dict) or not ("body" in data or "workers" in data):
        return None
    body = data.get("body")
    if "body" not in data and data["workers"] is not None:  # the format without a body
        body = JSONRenderer().render(data["workers"])
    return WorkersSnapshot(body=body, error=data.get("error", ""),
                           taken_at=data.get("taken_at", 0.0))


def workers_snapshot_refresh() -> WorkersSnapshot:
    """Ask the workers now and store the answer (or why the broker could not be asked)."""
    from queueworks.taskapi.selectors import worker_list

    try:
        workers, error = worker_list(), ""
    except BrokerUnavailable as exc:
        workers, error = None, f"{exc.detail} (reference {exc.reference})" if exc.reference else exc.detail
    return store_snapshot(workers, error=error)


def _refresh_in_background() -> None:
    interval = queueworks_settings.TASKAPI_WORKERS_SNAPSHOT_SECONDS
    if not _in_flight.acquire(blocking=False):
        return
    try:
        claimed = cache.add(LOCK, time.time(), timeout=max(interval, 0.001))
    except Exception:  # noqa: BLE001 - the cache table is unreachable: serve what we have
        logger.exception("workers snapshot: cannot take the refresh lock")
        claimed = False
    if not claimed:  # another process refreshes during this interval
        _in_flight.release()
        return

    def run():
        try:
            workers_snapshot_refresh()
        except Exception:  # noqa: BLE001 - a thread's error would vanish otherwise
            logger.exception("workers snapshot: refresh failed")
        finally:
            close_old_connections()
            _in_flight.release()

    threading.Thread(target=run, name="workers-snapshot", daemon=True).start()


def workers_snapshot(*, wait: float = COLD_WAIT_SECONDS) -> WorkersSnapshot | None:
    """The latest snapshot, refreshed in the background when stale.

    Returns None only if no snapshot exists and none arrived within ``wait``.
    """
    snapshot = _stored()
    if snapshot is None or snapshot.age >= queueworks_settings.TASKAPI_WORKERS_SNAPSHOT_SECONDS:
        _refresh_in_background()
    deadline = time.monotonic() + wait
    while snapshot is None and time.monotonic() < deadline:
        time.sleep(0.05)
        snapshot = _stored()
    return snapshot
