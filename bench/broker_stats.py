"""What RabbitMQ itself says about a benchmark's backlog: the queue's memory,
what it paged to disk, its version and mode, the node's memory against its
high-watermark and its alarms; and the classic-queue policy a run applies to
its own throw-away vhosts (never to the shared broker's configuration).
"""

from __future__ import annotations

import shutil
import time
from urllib.parse import quote

from tests.support import rabbit

#: --queue-policy: a vhost policy on every queue of a benchmark's vhosts.
QUEUE_POLICIES = {
    "none": None,  # the node's defaults (RabbitMQ 3.10: classic queue version 1)
    "v2": {"queue-version": 2},
    "lazy": {"queue-mode": "lazy"},
    "v2-lazy": {"queue-version": 2, "queue-mode": "lazy"},
}
#: Bytes of broker disk per queued persistent noop task, for the disk check
#: (a Celery noop message is about 600 bytes; its index entry and the message
#: store's own overhead come on top).
DISK_PER_TASK = 2048


def apply_queue_policy(vhost: str, name: str) -> None:
    definition = QUEUE_POLICIES[name]
    if definition:
        rabbit._api("PUT", f"policies/{quote(vhost, safe='')}/bench-queues", json={
            "pattern": ".*", "apply-to": "queues", "definition": definition, "priority": 0})


def node() -> dict:
    return rabbit._api("GET", "nodes").json()[0]


def check_disk(n: int, systems: int) -> None:
    """Refuse a size the broker's disk cannot hold (one backlog per system at a
    time, with room to spare)."""
    need = 3 * n * DISK_PER_TASK
    free = min(node().get("disk_free", 0) or 0, shutil.disk_usage("/").free)
    if free < need:
        raise SystemExit(f"error: --sizes {n:,} needs about {need / 2**30:.1f} GiB of free disk "
                         f"for the broker, {free / 2**30:.1f} GiB free")


def backlog_snapshot(vhost: str, queue: str, n: int, disk_before: int,
                     timeout: float = 60) -> dict:
    """The queue and the node with the backlog of n queued, once the management
    statistics (refreshed every few seconds) show all of it."""
    deadline = time.monotonic() + timeout
    info = {}
    while time.monotonic() < deadline:
        info = rabbit.queue_info(vhost, queue)
        if (info.get("messages_ready") or 0) >= n and info.get("message_bytes"):
            break
        time.sleep(1)
    status = info.get("backing_queue_status") or {}
    current = node()
    return {
        # What the statistics showed queued (below n: they lagged, the rest is stale).
        "messages_seen": info.get("messages_ready") or 0,
        "queue_memory_mb": (info.get("memory") or 0) / 2**20,
        "message_bytes_mb": (info.get("message_bytes") or 0) / 2**20,
        "message_bytes_ram_mb": (info.get("message_bytes_ram") or 0) / 2**20,
        "messages_ram": info.get("messages_ram"),
        "messages_paged_out": info.get("messages_paged_out"),
        "queue_version": status.get("version", 1),
        "queue_mode": status.get("mode") or info.get("arguments", {}).get("x-queue-mode")
        or "default",
        "node_mem_mb": current["mem_used"] / 2**20,
        "node_mem_limit_mb": current["mem_limit"] / 2**20,
        "mem_alarm": bool(current.get("mem_alarm")),
        "disk_alarm": bool(current.get("disk_free_alarm")),
        # The node's free disk before the backlog minus now: the message store
        # and the queue's index for it (other vhosts on the node move it too).
        "disk_used_mb": max(0, disk_before - current["disk_free"]) / 2**20,
    }
