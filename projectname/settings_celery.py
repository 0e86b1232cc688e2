"""Celery's settings: the broker, results, routing from the topology, delivery
guarantees and the RabbitMQ cluster (imported by projectname/settings.py)."""

from projectname.settings_env import TEST_SUPPORT, TIME_ZONE, env
from projectname.topology import TOPOLOGY, topology_for

# --- Celery ---------------------------------------------------------------------
# Spelled pyamqp:// so an installed librabbitmq can never silently swap the
# transport under us.
# No default: development's .env carries the project's own RabbitMQ user
# (deploy/bin/ensure-rabbitmq-user.sh writes it); `guest` is used nowhere.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
if not CELERY_BROKER_URL:
    # A multi-host inventory's cluster: the failover list of its broker nodes,
    # starting at another node on each host; the password from the environment.
    from projectname.settings_hosts import inventory_broker_url

    CELERY_BROKER_URL = inventory_broker_url(env)
# The project's database, one upsert per stored state (apps/core/results_backend.py;
# "django-db", django-celery-results' own backend, writes the same rows).
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND",
                            default="apps.core.results_backend:UpsertDatabaseBackend")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_TRACK_STARTED = True
# Fire-and-forget tasks (ignore_result, per task or per route in the topology)
# write no row when they succeed, but a failure is still stored: /ops/ and
# `manage.py doctor` list failures from the results table.
CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Queues, routes, per-task options and beat entries come from the topology.
CELERY_TASK_QUEUES = TOPOLOGY.celery_queues()
CELERY_TASK_DEFAULT_QUEUE = TOPOLOGY.default_queue
CELERY_TASK_DEFAULT_EXCHANGE = TOPOLOGY.default_queue
CELERY_TASK_DEFAULT_ROUTING_KEY = TOPOLOGY.default_queue
# The routes follow this process's DJANGO_TEST_SUPPORT even if the topology
# module was imported before .env was read; routes added to TOPOLOGY stay.
_ROUTED = topology_for(test_support=TEST_SUPPORT, base=TOPOLOGY)
CELERY_TASK_ROUTES = _ROUTED.celery_routes()
CELERY_TASK_ANNOTATIONS = _ROUTED.celery_annotations()
CELERY_BEAT_SCHEDULE = TOPOLOGY.celery_beat_schedule()
# Never create a queue implicitly: a typo'd queue must fail, not strand tasks.
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=True)
CELERY_TASK_SEND_SENT_EVENT = True

# --- Priorities, eager mode, Redis broker -------------------------------
# Priorities are declared per queue in the topology (Queue.max_priority ->
# x-max-priority).  No global max: it would add x-max-priority to every queue,
# and RabbitMQ refuses to redeclare an existing queue with other arguments.
CELERY_TASK_QUEUE_MAX_PRIORITY = None
# Messages sent without a priority sit in the middle (RabbitMQ: 0..9, 9 first),
# so a caller can both raise (priority=9) and lower (priority=1) a task.
CELERY_TASK_DEFAULT_PRIORITY = env.int("CELERY_TASK_DEFAULT_PRIORITY", default=5)
# Workers started outside the topology (ad hoc) take one message per process,
# so priorities are honoured there too; topology workers pass their own value.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

# Local development without a broker: CELERY_EAGER=1 runs every task inline in
# the caller and re-raises its exceptions.  A system check refuses it with
# DEBUG off (apps/doctor/checks.py).
TASKS_EAGER = env.bool("CELERY_EAGER", default=False)
CELERY_TASK_ALWAYS_EAGER = TASKS_EAGER
CELERY_TASK_EAGER_PROPAGATES = TASKS_EAGER

# Redis as the broker (CELERY_BROKER_URL=redis://host:6379/0): unacknowledged
# messages come back after the visibility timeout instead of on connection
# loss, so it must exceed the longest task (and any countdown/ETA).
if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "redis+socket://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **globals().get("CELERY_BROKER_TRANSPORT_OPTIONS", {}),
        "visibility_timeout": max(
            3600, 2 * max(TOPOLOGY.longest_time_limit(w) for w in TOPOLOGY.workers)
        ),
    }

# --- Reliability: delivery guarantees (apps/reliability) -----------------
# At-least-once delivery, exactly-once effects.  See docs/reliability.md.
if CELERY_BROKER_URL.startswith(("pyamqp://", "amqp://", "amqps://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **globals().get("CELERY_BROKER_TRANSPORT_OPTIONS", {}),
        # Publisher confirms: apply_async returns only once RabbitMQ has the
        # (persistent) message, so an accepted task is never lost in transit.
        "confirm_publish": True,
    }
# A broker that is briefly unavailable: publishing retries on a bounded
# policy (about 10 s in all), then raises kombu's OperationalError to the caller.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 5, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 3.0,
}
# Workers started before RabbitMQ wait for it, and reconnect forever after an
# outage (liveness: `manage.py liveness` checks they consume again).
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Ack after the task ran; a task whose worker process dies is requeued.  Every
# task's effects are idempotent (apps.reliability.effects.effect_apply); a
# route can opt out with Route(acks_late=False).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A task that raised, or hit its hard time limit, is recorded as FAILURE and
# acknowledged: re-running it would fail the same way.
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = True
# On a lost broker connection RabbitMQ requeues every unacked message, so a
# task still running will run again elsewhere anyway: cancel it now instead of
# letting two copies run side by side (its ack could not be delivered anyway).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Poison messages (undecodable bodies) go to the dead-letter queue, and the
# dead-letter exchange/queue are declared on every worker connection.
CELERY_WORKER_CONSUMER = "apps.reliability.consumer:ReliableConsumer"
# Beat writes last_run_at after every send, so a restart never fires the same
# slot twice (the scheduler itself is set under Operations below).
CELERY_BEAT_SYNC_EVERY = 1
# Execution starts per message before it is dead-lettered (a Route may set
# max_deliveries); classic queues have no x-delivery-limit.
RELIABILITY_DELIVERY_LIMIT = env.int("RELIABILITY_DELIVERY_LIMIT", default=5)
# Countdowns/ETAs further ahead than this wait in the database, not in a
# worker: RabbitMQ closes a channel that holds an unacked message longer than
# its consumer_timeout (30 min by default).  Keep it well below that.
RELIABILITY_LONG_DELAY_SECONDS = env.int("RELIABILITY_LONG_DELAY_SECONDS", default=900)

# --- Scale out: RabbitMQ cluster, failover, quorum queues ---------------
# CELERY_BROKER_URL may name several cluster nodes separated by ";"
# ("pyamqp://u:p@rabbit-1//;pyamqp://u:p@rabbit-2//;pyamqp://u:p@rabbit-3//"):
# kombu connects to the first that answers and fails over to the next when
# it goes away (producers, workers, beat alike).
# Seconds between AMQP heartbeats: a worker host that vanished (network cut,
# power off) is noticed after about two missed beats, and RabbitMQ then
# requeues its unacknowledged tasks for the other hosts.
CELERY_BROKER_HEARTBEAT = env.int("CELERY_BROKER_HEARTBEAT", default=120)
# TASK_QUEUE_TYPE=quorum declares every topology queue as a quorum queue
# (replicated on the cluster, survives losing a minority of its nodes).  It
# changes queue arguments, so existing classic queues must be drained and
# deleted first (RabbitMQ refuses to redeclare a queue with other arguments).
TASK_QUEUE_TYPE = env("TASK_QUEUE_TYPE", default="classic")
if TASK_QUEUE_TYPE not in ("classic", "quorum"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"TASK_QUEUE_TYPE must be 'classic' or 'quorum', not {TASK_QUEUE_TYPE!r}.")
if TASK_QUEUE_TYPE == "quorum":
    _quorum_queues = {queue.name: queue for queue in TOPOLOGY.with_queue_type("quorum").celery_queues()}
    CELERY_TASK_QUEUES = tuple(_quorum_queues.get(queue.name, queue) for queue in CELERY_TASK_QUEUES)
    # Anything Celery declares on its own (e.g. the default queue) is quorum too.
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    # Quorum queues do not support global QoS: the worker detects them and uses
    # a per-consumer prefetch, and declares the native delayed-delivery
    # exchanges/queues (celery_delayed_*) that carry ETA/countdown tasks.
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True
    CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE = "quorum"
    # ...once per (re)connection through the connected node, not once per URL
    # of the failover list (see apps/core/cluster.py).
    CLUSTER_BASE_WORKER_CONSUMER = globals().get(
        "CELERY_WORKER_CONSUMER", "celery.worker.consumer:Consumer")
    CELERY_WORKER_CONSUMER = "apps.core.cluster:ClusterConsumer"

# --- Beat ---------------------------------------------------------------------
# Beat reads its schedule from the database (editable in the admin, picked up
# without a restart); topology schedules are synced into it by
# `manage.py sync_schedules` (and at beat start).  It keeps apps.reliability's
# single-beat lock (a RabbitMQ exclusive queue: exactly one beat runs).  See
# apps/ops/scheduler.py.
CELERY_BEAT_SCHEDULER = "apps.ops.scheduler:DatabaseScheduler"
