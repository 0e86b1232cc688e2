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
of Celery's and uses its private names through queueworks/dispatch/compat/celery.py:
on another Celery version than the tested one, the consumer keeps Celery's
own step (set up per URL, slower to reconnect, never wrong).
"""

from __future__ import annotations

import logging

from celery.utils.imports import symbol_by_name
from django.conf import settings
from kombu.utils.functional import retry_over_time
from kombu.utils.url import maybe_sanitize_url

from queueworks.dispatch.compat import celery as compat_celery
from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger(__name__)

CELERY_STEP = "celery.worker.consumer.delayed_delivery:DelayedDelivery"


_stock = compat_celery.delayed_delivery


class ClusterDelayedDelivery(_stock.DelayedDelivery):
    """Native delayed delivery, set up once through the connected node."""

    def start(self, c) -> None:
        app = c.app
        self._validate_queue_type(app.conf.broker_native_delayed_delivery_queue_type)
        url = c.connection.as_uri(include_password=True)
        try:
            retry_over_time(
                self._setup_delayed_delivery, args=(c, url), catch=_stock.RETRIED_EXCEPTIONS,
                errback=self._on_retry, interval_start=_stock.RETRY_INTERVAL,
                max_retries=_stock.MAX_RETRIES,
            )
        except Exception as exc:  # noqa: BLE001 - logged; consuming must go on
            logger.critical("Native delayed delivery not set up through %s: %s",
                            maybe_sanitize_url(url), exc)

    def _setup_delayed_delivery(self, c, broker_url: str) -> None:
        with c.app.connection_for_write(url=broker_url) as connection:
            channel = connection.default_channel
            for queue in c.app.amqp.queues.values():
                queue.bind(channel).declare()
        super()._setup_delayed_delivery(c, broker_url)


_Base = symbol_by_name(queueworks_settings.CLUSTER_BASE_WORKER_CONSUMER)


class ClusterConsumer(_Base):
    class Blueprint(_Base.Blueprint):
        default_steps = [
            "queueworks.core.cluster:ClusterDelayedDelivery"
            if step == CELERY_STEP and compat_celery.SUPPORTED else step
            for step in _Base.Blueprint.default_steps
        ]
