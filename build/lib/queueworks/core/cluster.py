"""Worker consumer for a RabbitMQ cluster (QUEUEWORKS_TASK_QUEUE_TYPE = "quorum").

With quorum queues Celery sets up *native delayed delivery* (the
``celery_delayed_*`` exchanges and queues that carry ETA/countdown tasks) in a
consumer bootstep, on every (re)connection.  Two things in Celery's step are
wrong for a failover list of one cluster's nodes:

* it sets the topology up once per URL in the list, as if each were a separate
  broker, and retries a URL that does not answer for about 15 s, so a worker
  whose node died stops consuming for that long every time it reconnects (the
  nodes of a cluster share exchanges and queues: once, through the node the
  worker is connected to, is enough);
* it binds every queue of the topology, and a queue no worker has declared yet
  fails the binding with 404 (logged as CRITICAL "native delayed delivery will
  not be available").  Declaring the topology's queues first (idempotent, the
  same arguments every declarer uses) makes the binding succeed.

``ClusterConsumer`` is the configured consumer (``QUEUEWORKS_CLUSTER_BASE_WORKER_CONSUMER``,
e.g. queueworks.reliability's) with that one step replaced.  The step is a subclass
of Celery's from queueworks/dispatch/compat/celery.py, which holds the private
names: on another Celery version than the tested one, the consumer keeps
Celery's own step (set up per URL, slower to reconnect, never wrong).
"""

from __future__ import annotations

from celery.utils.imports import symbol_by_name

from queueworks.conf import settings as queueworks_settings
from queueworks.dispatch.compat import celery as compat_celery

CELERY_STEP = "celery.worker.consumer.delayed_delivery:DelayedDelivery"


class ClusterDelayedDelivery(compat_celery.DelayedDeliveryThroughOneUrl):
    """Native delayed delivery, set up once through the connected node, after
    the topology's queues are declared."""

    def prepare(self, c, connection) -> None:
        channel = connection.default_channel
        for queue in c.app.amqp.queues.values():
            queue.bind(channel).declare()


_Base = symbol_by_name(queueworks_settings.CLUSTER_BASE_WORKER_CONSUMER)


class ClusterConsumer(_Base):
    class Blueprint(_Base.Blueprint):
        default_steps = [
            "queueworks.core.cluster:ClusterDelayedDelivery"
            if step == CELERY_STEP and compat_celery.SUPPORTED else step
            for step in _Base.Blueprint.default_steps
        ]
