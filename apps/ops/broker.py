"""Queue statistics from RabbitMQ's management HTTP API."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlparse

import requests
from django.conf import settings


class BrokerStatsError(Exception):
    pass


@dataclass(frozen=True)
class ManagementApi:
    url: str
    user: str
    password: str
    vhost: str


def management_api() -> ManagementApi:
    """Where the management API is, with which credentials, for the broker's vhost.

    Credentials come from RABBITMQ_MANAGEMENT_USER/PASSWORD, else from the
    broker URL; the vhost always from the broker URL.
    """
    from projectname.celery import app

    # The URL this process's Celery app really uses (the first, for a
    # "url1;url2" failover list).
    broker_url = str(app.conf.broker_url or settings.CELERY_BROKER_URL).split(";")[0]
    broker = urlparse(broker_url)
    vhost = unquote(broker.path[1:]) if broker.path and broker.path != "/" else "/"
    return ManagementApi(
        url=settings.RABBITMQ_MANAGEMENT_URL.rstrip("/"),
        user=settings.RABBITMQ_MANAGEMENT_USER or unquote(broker.username or ""),
        password=settings.RABBITMQ_MANAGEMENT_PASSWORD or unquote(broker.password or ""),
        vhost=vhost,
    )


@dataclass(frozen=True)
class QueueStats:
    name: str
    exists: bool
    ready: int = 0
    unacked: int = 0
    consumers: int = 0
    # Age in seconds of the oldest ready message, when RabbitMQ knows it.
    oldest_wait: float | None = None
    publish_rate: float | None = None
    deliver_rate: float | None = None


def queue_stats(names: list[str], *, now: float | None = None) -> dict[str, QueueStats]:
    api = management_api()
    try:
        response = requests.get(
            f"{api.url}/api/queues/{quote(api.vhost, safe='')}",
            params={"columns": "name,messages_ready,messages_unacknowledged,consumers,"
                               "head_message_timestamp,message_stats"},
            auth=(api.user, api.password), timeout=3,
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        raise BrokerStatsError(f"RabbitMQ management API at {api.url}: {exc}") from exc
    now = time.time() if now is None else now
    rows = {row["name"]: row for row in response.json()}
    stats = {}
    for name in names:
        row = rows.get(name)
        if row is None:
            stats[name] = QueueStats(name=name, exists=False)
            continue
        ready = row.get("messages_ready") or 0
        head = row.get("head_message_timestamp")
        message_stats = row.get("message_stats") or {}
        stats[name] = QueueStats(
            name=name, exists=True, ready=ready,
            unacked=row.get("messages_unacknowledged") or 0,
            consumers=row.get("consumers") or 0,
            oldest_wait=max(0.0, now - head) if head and ready else None,
            publish_rate=(message_stats.get("publish_details") or {}).get("rate"),
            deliver_rate=(message_stats.get("deliver_get_details") or {}).get("rate"),
        )
    return stats
