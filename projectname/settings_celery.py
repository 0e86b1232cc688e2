"""Celery's settings (imported by projectname/settings.py): the package
derives them from the topology (queueworks/celery_settings.py); this module
reads the environment they depend on."""

from projectname.settings_env import PROFILE, TEST_SUPPORT, TIME_ZONE, env
from queueworks.core import profiles
from projectname.topology import TOPOLOGY, topology_for
from queueworks.celery_settings import celery_settings

# Spelled pyamqp:// so an installed librabbitmq can never silently swap the
# transport.  No default: development's .env carries the project's own
# RabbitMQ user (deploy/bin/ensure-rabbitmq-user.sh writes it).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
if not CELERY_BROKER_URL:
    # A multi-host inventory's cluster: the failover list of its broker nodes,
    # starting at another node on each host; the password from the environment.
    from projectname.settings_hosts import inventory_broker_url

    CELERY_BROKER_URL = inventory_broker_url(env)

globals().update(celery_settings(
    TOPOLOGY,
    broker_url=CELERY_BROKER_URL,
    time_zone=TIME_ZONE,
    # The routes follow this process's DJANGO_TEST_SUPPORT even if the topology
    # module was imported before .env was read; routes added to TOPOLOGY stay.
    routed=topology_for(test_support=TEST_SUPPORT, base=TOPOLOGY),
    # "quorum" declares every topology queue that does not choose its own type
    # as a quorum queue (replicated on a cluster, explicit delivery limit and
    # dead-letter target): production's default, made for RabbitMQ 4.x
    # (docs/upgrade-rabbitmq-4.md).  Existing classic queues must be moved
    # first (`manage.py migrate_queues`): RabbitMQ refuses other arguments.
    queue_type=env("TASK_QUEUE_TYPE",
                   default="quorum" if PROFILE == profiles.PRODUCTION else "classic"),
    default_priority=env.int("CELERY_TASK_DEFAULT_PRIORITY", default=5),
    heartbeat=env.int("CELERY_BROKER_HEARTBEAT", default=120),
    # CELERY_EAGER=1: local development without a broker.
    eager=env.bool("CELERY_EAGER", default=False),
    send_task_events=env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=True),
    result_backend=env("CELERY_RESULT_BACKEND",
                       default="queueworks.core.results_backend:UpsertDatabaseBackend"),
))
# Execution starts per message before it is dead-lettered (a Route may set
# max_deliveries); countdowns further ahead than the long delay wait in the
# database, not in a worker (RabbitMQ's consumer_timeout).  docs/reliability.md.
QUEUEWORKS_RELIABILITY_DELIVERY_LIMIT = env.int("RELIABILITY_DELIVERY_LIMIT", default=5)
QUEUEWORKS_RELIABILITY_LONG_DELAY_SECONDS = env.int("RELIABILITY_LONG_DELAY_SECONDS", default=900)
