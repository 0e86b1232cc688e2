"""Celery's settings for a project that runs on the package: the broker,
results, routing from the topology and the delivery guarantees.

A project's settings module calls it once:

    from queueworks.celery_settings import celery_settings
    from mysite.topology import TOPOLOGY
    globals().update(celery_settings(TOPOLOGY, broker_url=env("CELERY_BROKER_URL")))

Every name it returns is a ``CELERY_*`` setting that the project may still
override after the call.  Nothing here reads the environment.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from queueworks.core.topology import Topology

RESULT_BACKEND = "queueworks.core.results_backend:UpsertDatabaseBackend"
QUEUE_TYPES = ("classic", "quorum")


def celery_settings(topology: Topology, *, broker_url: str, time_zone: str = "UTC",
                    routed: Topology | None = None, queue_type: str = "classic",
                    default_priority: int = 5, heartbeat: int = 120, eager: bool = False,
                    send_task_events: bool = True,
                    result_backend: str = RESULT_BACKEND) -> dict[str, Any]:
    """The ``CELERY_*`` settings derived from ``topology``.

    ``routed`` (default: ``topology``) gives routes and per-task options when
    they differ from the declared queues' topology (test-only routes).
    """
    routed = routed or topology
    if queue_type not in QUEUE_TYPES:
        raise ImproperlyConfigured(
            f"QUEUEWORKS_TASK_QUEUE_TYPE must be 'classic' or 'quorum', not {queue_type!r}.")
    s: dict[str, Any] = {
        # Spelled pyamqp:// by the project so an installed librabbitmq can
        # never silently swap the transport.
        "CELERY_BROKER_URL": broker_url,
        # The project's database, one upsert per stored state
        # (queueworks/core/results_backend.py; "django-db" writes the same rows).
        "CELERY_RESULT_BACKEND": result_backend,
        "CELERY_RESULT_EXTENDED": True,
        # A result the database refuses (locked, connection lost) is written
        # again, a bounded number of times, before the message goes back to
        # its queue (queueworks/core/results_backend.py): a task that ran is
        # never recorded as failed for want of a result write.
        "CELERY_RESULT_BACKEND_ALWAYS_RETRY": True,
        "CELERY_RESULT_BACKEND_MAX_RETRIES": 3,
        "CELERY_RESULT_BACKEND_BASE_SLEEP_BETWEEN_RETRIES_MS": 100,
        "CELERY_RESULT_BACKEND_MAX_SLEEP_BETWEEN_RETRIES_MS": 2000,
        "CELERY_TASK_TRACK_STARTED": True,
        # Fire-and-forget tasks write no row when they succeed, but a failure
        # is still stored: /ops/ and `manage.py doctor` list failures.
        "CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED": True,
        "CELERY_TASK_SERIALIZER": "json",
        "CELERY_RESULT_SERIALIZER": "json",
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_RESULT_ACCEPT_CONTENT": ["json"],
        "CELERY_TIMEZONE": time_zone,
        "CELERY_ENABLE_UTC": True,
        "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
        # Queues, routes, per-task options and beat entries come from the topology.
        "CELERY_TASK_QUEUES": topology.celery_queues(),
        "CELERY_TASK_DEFAULT_QUEUE": topology.default_queue,
        "CELERY_TASK_DEFAULT_EXCHANGE": topology.default_queue,
        "CELERY_TASK_DEFAULT_ROUTING_KEY": topology.default_queue,
        "CELERY_TASK_ROUTES": routed.celery_routes(),
        "CELERY_TASK_ANNOTATIONS": routed.celery_annotations(),
        "CELERY_BEAT_SCHEDULE": topology.celery_beat_schedule(),
        # Never create a queue implicitly: a typo'd queue must fail, not strand tasks.
        "CELERY_TASK_CREATE_MISSING_QUEUES": False,
        "CELERY_WORKER_SEND_TASK_EVENTS": send_task_events,
        "CELERY_TASK_SEND_SENT_EVENT": True,
        # Priorities are declared per queue (Queue.max_priority).  No global
        # max: it would add x-max-priority to every queue, and RabbitMQ refuses
        # to redeclare an existing queue with other arguments.
        "CELERY_TASK_QUEUE_MAX_PRIORITY": None,
        # Messages sent without a priority sit in the middle (0..9, 9 first),
        # so a caller can both raise and lower a task.
        "CELERY_TASK_DEFAULT_PRIORITY": default_priority,
        # Ad hoc workers take one message per process, so priorities hold
        # there too; topology workers pass their own value.
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
        # Local development without a broker: every task runs inline and
        # re-raises (a system check refuses it with DEBUG off).
        "CELERY_TASK_ALWAYS_EAGER": eager,
        "CELERY_TASK_EAGER_PROPAGATES": eager,
        # A briefly unavailable broker: publishing retries on a bounded policy
        # (about 10 s in all), then raises kombu's OperationalError.
        "CELERY_TASK_PUBLISH_RETRY": True,
        "CELERY_TASK_PUBLISH_RETRY_POLICY": {
            "max_retries": 5, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 3.0,
        },
        # Workers started before RabbitMQ wait for it, and reconnect forever.
        "CELERY_BROKER_CONNECTION_RETRY": True,
        "CELERY_BROKER_CONNECTION_MAX_RETRIES": None,
        # Ack after the task ran; a task whose worker process dies is requeued.
        # Every task's effects are idempotent (queueworks.reliability.effects);
        # a route can opt out with Route(acks_late=False).
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        # A task that raised or hit its hard limit is FAILURE and acknowledged.
        "CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT": True,
        # On a lost connection RabbitMQ requeues every unacked message: cancel
        # the running copy instead of letting two run side by side.
        "CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS": True,
        # Poison messages go to the dead-letter queue, and the dead-letter
        # exchange/queue are declared on every worker connection.
        "CELERY_WORKER_CONSUMER": "queueworks.reliability.consumer:ReliableConsumer",
        # Beat writes last_run_at after every send: a restart never fires a slot twice.
        "CELERY_BEAT_SYNC_EVERY": 1,
        # Every AMQP heartbeat interval: a vanished worker host is noticed
        # after about two missed beats and its unacked tasks requeued.
        "CELERY_BROKER_HEARTBEAT": heartbeat,
        # Schedules live in the database (editable in the admin), topology
        # entries synced in; one beat at a time (queueworks/ops/scheduler.py).
        "CELERY_BEAT_SCHEDULER": "queueworks.ops.scheduler:DatabaseScheduler",
    }
    transport_options: dict[str, Any] = {}
    if broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        # Unacked messages come back after the visibility timeout, which must
        # exceed the longest task (and any countdown/ETA).
        transport_options["visibility_timeout"] = max(
            3600, 2 * max(topology.longest_time_limit(w) for w in topology.workers))
    if broker_url.startswith(("pyamqp://", "amqp://", "amqps://")):
        # Publisher confirms: apply_async returns only once RabbitMQ has the
        # (persistent) message, so an accepted task is never lost in transit.
        transport_options["confirm_publish"] = True
    if transport_options:
        s["CELERY_BROKER_TRANSPORT_OPTIONS"] = transport_options
    if queue_type == "quorum":
        quorum = {queue.name: queue for queue in topology.with_queue_type("quorum").celery_queues()}
        s["CELERY_TASK_QUEUES"] = tuple(quorum.get(queue.name, queue)
                                        for queue in s["CELERY_TASK_QUEUES"])
        # Anything Celery declares on its own (the default queue) is quorum too.
        s["CELERY_TASK_DEFAULT_QUEUE_TYPE"] = "quorum"
        s["CELERY_TASK_DEFAULT_EXCHANGE_TYPE"] = "topic"
        # Quorum queues have no global QoS: the worker uses per-consumer
        # prefetch, and declares the native delayed-delivery exchanges/queues
        # (celery_delayed_*) that carry ETA/countdown tasks.
        s["CELERY_WORKER_DETECT_QUORUM_QUEUES"] = True
        s["CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE"] = "quorum"
        # ...once per (re)connection through the connected node, not once per
        # URL of the failover list (queueworks/core/cluster.py).
        s["QUEUEWORKS_CLUSTER_BASE_WORKER_CONSUMER"] = s["CELERY_WORKER_CONSUMER"]
        s["CELERY_WORKER_CONSUMER"] = "queueworks.core.cluster:ClusterConsumer"
    s["QUEUEWORKS_TASK_QUEUE_TYPE"] = queue_type
    return s
