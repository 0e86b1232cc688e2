"""What changes when the broker is Redis instead of RabbitMQ.

RabbitMQ gives this project guarantees Redis does not: publisher confirms,
dead-lettering, native per-queue priorities, quorum queues, redelivery when a
worker's connection drops.  When such a guarantee is configured but the broker
is Redis, say so at start-up (system check, worker and beat logs, doctor).
"""

from __future__ import annotations

import importlib.util
from urllib.parse import urlsplit

from queueworks.core.topology import Topology

REDIS_SCHEMES = ("redis", "rediss", "redis+socket")
AMQP_SCHEMES = ("amqp", "pyamqp", "amqps", "librabbitmq")


def first_broker_url(url: str) -> str:
    """The first of a failover list ("pyamqp://n1//;pyamqp://n2//", kombu's syntax)."""
    return url.split(";", 1)[0].strip()


def broker_scheme(url: str) -> str:
    return urlsplit(first_broker_url(url)).scheme.lower()


def broker_identity(url: str) -> str:
    """host:port/vhost-or-db, without scheme or credentials (the same broker, however spelled)."""
    parts = urlsplit(first_broker_url(url))
    redis = parts.scheme.lower() in REDIS_SCHEMES
    port = parts.port or (6379 if redis else 5672)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return f"{parts.hostname or '127.0.0.1'}:{port}/{path or ('0' if redis else '/')}"


def is_redis(url: str) -> bool:
    return broker_scheme(url) in REDIS_SCHEMES


def rabbitmq_only_guarantees(*, broker_url: str, topology: Topology,
                             transport_options: dict | None = None) -> list[str]:
    """One sentence per configured guarantee that the Redis broker cannot give."""
    if not is_redis(broker_url):
        return []
    options = transport_options or {}
    problems: list[str] = []
    prioritized = [q.name for q in topology.queues if q.max_priority is not None]
    if prioritized:
        problems.append(
            f"queues {prioritized} declare x-max-priority: on Redis priorities are emulated "
            "with 4 sub-queues (0-2, 3-5, 6-8, 9) polled in that order, so priority 0 runs "
            "FIRST (the reverse of RabbitMQ) and a waiting low-priority message can still "
            "be fetched before a newer high-priority one."
        )
    quorum = [q.name for q in topology.queues if q.kind != "classic"]
    if quorum:
        problems.append(f"queues {quorum} are declared as {sorted({q.kind for q in topology.queues if q.kind != 'classic'})}: "
                        "Redis ignores the queue type (no replication).")
    dead_lettered = [q.name for q in topology.queues
                     if any(key.startswith("x-dead-letter") for key in q.arguments())]
    if dead_lettered:
        problems.append(f"queues {dead_lettered} dead-letter rejected messages: Redis has no "
                        "dead-letter exchange, a rejected message is dropped.")
    if options.get("confirm_publish"):
        problems.append("confirm_publish is set: Redis has no publisher confirms; a publish "
                        "is only as safe as Redis persistence (appendonly).")
    if importlib.util.find_spec("queueworks.reliability.beat") is not None:
        problems.append("the beat lock is an exclusive RabbitMQ queue: Redis does not enforce "
                        "exclusivity, so a second beat would schedule everything twice.")
    late = [r.task for r in topology.routes if r.acks_late]
    if late:
        timeout = options.get("visibility_timeout", 3600)
        problems.append(
            f"{len(late)} task(s) use acks_late: on Redis an unacknowledged message is "
            f"redelivered only after visibility_timeout ({timeout} s), not when the worker "
            "dies, and a task running longer than that is delivered twice."
        )
    return problems
