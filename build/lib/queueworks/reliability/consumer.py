"""The worker's message consumer (``CELERY_WORKER_CONSUMER``).

Celery's own consumer acknowledges (drops) a message it cannot decode, and
with task protocol 2 it does not even try: the body is decoded in the pool
process, where a bad body becomes a FAILURE that ``acks_late`` acknowledges.
Either way the message is gone.  This consumer:

* declares the dead-letter exchange and queue on every (re)connection, before
  consuming (RabbitMQ silently drops messages dead-lettered to a missing
  exchange);
* opens the event dispatcher's connection without publisher confirms
  (queueworks/dispatch/worker.py);
* checks that each task message's body decodes (JSON, accepted content type)
  before handing it to the pool, and rejects a poison message without requeue,
  so RabbitMQ moves it to the dead-letter queue where an operator can see it
  (on the bulk lane the lean path's ``Task.Strategy`` checks the bodies of
  the messages it takes, through ``on_decode_error``: queueworks/dispatch/lean.py).

Unknown task names are already rejected (without requeue) by Celery itself,
so they end in the dead-letter queue too.
"""

from __future__ import annotations

import logging

from celery import bootsteps
from celery.worker.consumer.consumer import Consumer
from kombu.serialization import prepare_accept_content

from queueworks.dispatch.worker import EventsWithoutConfirms

logger = logging.getLogger(__name__)


class DeclareDeadLetters(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c):
        from queueworks.reliability.dead_letters import dead_letters_declare

        dead_letters_declare(channel=c.connection.default_channel)


def _reject_poison(message, exc) -> None:
    logger.error(
        "Poison message rejected to the dead-letter queue: %s: %s (content_type=%r, "
        "headers=%r, body=%r)", exc.__class__.__name__, exc, message.content_type,
        {k: v for k, v in (message.headers or {}).items() if k in ("id", "task")},
        message.body[:200] if isinstance(message.body, (bytes, str)) else message.body,
    )
    message.reject(requeue=False)


class ReliableConsumer(EventsWithoutConfirms, Consumer):
    #: queueworks.dispatch.lean.LeanRunner while the lean path is on (LeanSteps).
    lean = None

    class Blueprint(Consumer.Blueprint):
        default_steps = [
            Consumer.Blueprint.default_steps[0],
            "queueworks.reliability.consumer:DeclareDeadLetters",
            *Consumer.Blueprint.default_steps[1:],
            "queueworks.dispatch.lean:LeanSteps",
        ]

    def on_decode_error(self, message, exc):
        _reject_poison(message, exc)

    def create_task_handler(self, promise=None):
        """Celery's handler, behind the poison check.  A task whose strategy
        checks bodies itself (``checks_bodies``: the lean path's, which
        decodes each body once) is left to it."""
        kwargs = {} if promise is None else {"promise": promise}
        handler = super().create_task_handler(**kwargs)
        accept = prepare_accept_content(self.app.conf.accept_content)
        strategies = self.strategies

        def on_task_received(message):
            headers = message.headers
            if (isinstance(headers, dict) and "task" in headers
                    and not getattr(strategies.get(headers["task"]), "checks_bodies", False)):
                if message.accept is None:
                    message.accept = accept
                try:
                    # Decoded once: kombu caches the payload, which Celery's
                    # default strategy reads next (``message.payload``).
                    message.decode()
                except Exception as exc:  # noqa: BLE001 - any decode failure is poison
                    return _reject_poison(message, exc)
            return handler(message)

        return on_task_received
