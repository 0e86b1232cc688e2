"""Queue and consumer state as the broker reports it; the one place that reads it.

Two sources, each for what it does best:

* RabbitMQ's management HTTP API (``queue_states``): counts, consumers, the
  age of the oldest message, rates, and a queue's live **arguments and type**,
  which nothing in AMQP reveals;
* a passive ``queue.declare`` over AMQP (``queue_counts``): ready messages
  and consumers without the management plugin, exact at this instant (the
  management API's numbers lag by its statistics interval), and it never
  creates a queue.

``argument_differences`` compares a live queue with the declaration in
``projectname/topology.py`` (through Celery's ``task_queues``), sentence by
sentence, so a conflict is named as the cause of what follows from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlparse

import requests
from django.conf import settings
from queueworks.conf import settings as queueworks_settings

MANAGEMENT_TIMEOUT = 3.0
QUEUE_COLUMNS = ("name,type,arguments,durable,messages_ready,messages_unacknowledged,consumers,"
                 "head_message_timestamp,message_stats")


class BrokerStateError(Exception):
    """The broker (or its management API) could not be read; the message says where."""


@dataclass(frozen=True)
class ManagementApi:
    url: str
    user: str
    password: str
    vhost: str

    def path(self, *parts: str) -> str:
        return "/".join([f"{self.url}/api", *(quote(part, safe="") for part in parts)])


def current_broker_url() -> str:
    """The URL this process's Celery app really uses (the first of a failover list)."""
    from queueworks.conf import celery_app
    app = celery_app()

    return str(app.conf.broker_url or settings.CELERY_BROKER_URL).split(";")[0].strip()


def management_api(broker_url: str | None = None) -> ManagementApi:
    """Where the management API is, with which credentials, for the broker's vhost.

    Credentials come from RABBITMQ_MANAGEMENT_USER/PASSWORD, else from the
    broker URL; the vhost always from the broker URL.
    """
    broker = urlparse(broker_url.split(";")[0].strip() if broker_url else current_broker_url())
    vhost = unquote(broker.path[1:]) if broker.path and broker.path != "/" else "/"
    return ManagementApi(
        url=queueworks_settings.RABBITMQ_MANAGEMENT_URL.rstrip("/"),
        user=queueworks_settings.RABBITMQ_MANAGEMENT_USER or unquote(broker.username or ""),
        password=queueworks_settings.RABBITMQ_MANAGEMENT_PASSWORD or unquote(broker.password or ""),
        vhost=vhost,
    )


@dataclass(frozen=True)
class QueueState:
    name: str
    exists: bool
    ready: int = 0
    unacked: int = 0
    consumers: int = 0
    # Age in seconds of the oldest ready message, when RabbitMQ knows it.
    oldest_wait: float | None = None
    publish_rate: float | None = None
    deliver_rate: float | None = None
    # The queue's type ("classic", "quorum") and x-arguments on the broker.
    queue_type: str | None = None
    arguments: dict = field(default_factory=dict)


def queue_states(names: list[str], *, now: float | None = None, broker_url: str | None = None,
                 timeout: float = MANAGEMENT_TIMEOUT,
                 also: Callable[[str], bool] | None = None) -> dict[str, QueueState]:
    """Name -> state of each named queue, from the management API (one request),
    and of every other queue of the vhost whose name ``also`` accepts."""
    api = management_api(broker_url)
    try:
        response = requests.get(api.path("queues", api.vhost), params={"columns": QUEUE_COLUMNS},
                                auth=(api.user, api.password), timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise BrokerStateError(f"RabbitMQ management API at {api.url}: {exc}") from exc
    now = time.time() if now is None else now
    rows = {row["name"]: row for row in response.json()}
    if also is not None:
        names = [*names, *(name for name in rows if name not in names and also(name))]
    states = {}
    for name in names:
        row = rows.get(name)
        if row is None:
            states[name] = QueueState(name=name, exists=False)
            continue
        ready = row.get("messages_ready") or 0
        head = row.get("head_message_timestamp")
        message_stats = row.get("message_stats") or {}
        states[name] = QueueState(
            name=name, exists=True, ready=ready,
            unacked=row.get("messages_unacknowledged") or 0,
            consumers=row.get("consumers") or 0,
            oldest_wait=max(0.0, now - head) if head and ready else None,
            publish_rate=(message_stats.get("publish_details") or {}).get("rate"),
            deliver_rate=(message_stats.get("deliver_get_details") or {}).get("rate"),
            queue_type=row.get("type") or "classic",
            arguments=dict(row.get("arguments") or {}),
        )
    return states


def queue_bindings(name: str, *, broker_url: str | None = None,
                   timeout: float = MANAGEMENT_TIMEOUT) -> list[dict]:
    """The queue's bindings except the implicit one to the default exchange."""
    api = management_api(broker_url)
    try:
        response = requests.get(api.path("queues", api.vhost, name, "bindings"),
                                auth=(api.user, api.password), timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise BrokerStateError(f"RabbitMQ management API at {api.url}: {exc}") from exc
    return [row for row in response.json() if row.get("source")]


def queue_counts(connection, names: list[str]) -> dict[str, tuple[int, int] | None]:
    """Name -> (ready messages, consumers) by passive declare; None: no such queue.

    A missing queue closes the channel (NOT_FOUND), so each queue gets its own.
    """
    counts: dict[str, tuple[int, int] | None] = {}
    for name in names:
        channel = connection.channel()
        try:
            _, ready, consumers = channel.queue_declare(queue=name, passive=True)
            counts[name] = (ready, consumers)
        except connection.channel_errors:
            counts[name] = None
        finally:
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - the channel may be closed already
                pass
    return counts


# -- declared vs live ------------------------------------------------------------
def declared_queues() -> dict:
    """Name -> kombu Queue as Celery declares it (topology + TASK_QUEUE_TYPE),
    and the dead-letter queue as the workers declare it."""
    from queueworks.conf import TOPOLOGY

    queues = {queue.name: queue for queue in settings.CELERY_TASK_QUEUES}
    dead_letter = TOPOLOGY.dead_letter_queue(queueworks_settings.TASK_QUEUE_TYPE)
    queues.setdefault(dead_letter.name, dead_letter)
    return queues


def declared_type(arguments: dict | None) -> str:
    return (arguments or {}).get("x-queue-type", "classic")


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def argument_differences(*, name: str, declared: dict | None, live: QueueState) -> list[str]:
    """One sentence per difference between a live queue and its declaration.

    Empty when they agree or when the queue does not exist (declaring it then
    just creates it).  ``x-queue-type`` is compared as the queue's type.
    """
    if not live.exists:
        return []
    declared = dict(declared or {})
    live_arguments = dict(live.arguments)
    differences = []
    want_type, have_type = declared_type(declared), live.queue_type or declared_type(live_arguments)
    if want_type != have_type:
        differences.append(f"queue {name}: type is {have_type} on the broker, declared {want_type}")
    declared.pop("x-queue-type", None)
    live_arguments.pop("x-queue-type", None)
    for key in sorted(set(declared) | set(live_arguments)):
        if key not in live_arguments:
            differences.append(f"queue {name}: {key} is absent on the broker, "
                               f"declared {_shown(declared[key])}")
        elif key not in declared:
            differences.append(f"queue {name}: {key} is {_shown(live_arguments[key])} on the "
                               "broker, not declared")
        elif live_arguments[key] != declared[key]:
            differences.append(f"queue {name}: {key} is {_shown(live_arguments[key])} on the "
                               f"broker, declared {_shown(declared[key])}")
    return differences


def queue_conflicts(states: dict[str, QueueState]) -> dict[str, list[str]]:
    """Topology queue name -> differences, for every queue that differs."""
    conflicts = {}
    for name, queue in declared_queues().items():
        state = states.get(name)
        if state is None:
            continue
        differences = argument_differences(name=name, declared=queue.queue_arguments, live=state)
        if differences:
            conflicts[name] = differences
    return conflicts


MIGRATE_FIX = ("`python manage.py migrate_queues` (workers of the queue paused, its messages "
               "moved aside and back; `--dry-run` prints the plan)")
