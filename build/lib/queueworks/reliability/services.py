"""Delivery guarantees, one module per subject; this module re-exports their
public service functions (keyword-only) so callers can import them from one
place:

* ``effects``: ``effect_apply(key=..., apply=...)`` applies a side effect at
  most once.
* ``delivery_limits``: ``delivery_record(...)`` counts a redelivered
  execution; past the limit the message is rejected to the dead-letter
  exchange (``DeliveryLimitExceeded``).  ``RetriesExhausted`` ends transient
  retries the same way.
* ``dead_letters``: ``dead_letters_list(...)`` / ``dead_letter_requeue(...)``
  / ``dead_letter_discard(...)``: what sits in the dead-letter queue, and
  putting it back on its original queue (``manage.py dead_letters``, the ops
  dashboard).
* ``delayed``: ``delayed_task_store(...)`` / ``delayed_tasks_dispatch(...)``:
  long countdowns wait in the database, not in a worker (RabbitMQ
  consumer_timeout).
* ``liveness``: ``queues_liveness(...)``, the consumer count of every
  topology queue.

The fault-injection harness's accounting is test-only and lives in
``apps.testing.services``.
"""

from queueworks.reliability.dead_letters import (
    DeadLetter,
    dead_letter_discard,
    dead_letter_requeue,
    dead_letters_declare,
    dead_letters_list,
)
from queueworks.reliability.delayed import delayed_task_store, delayed_tasks_dispatch, long_delay_seconds
from queueworks.reliability.delivery_limits import (
    DeliveryLimitExceeded,
    RetriesExhausted,
    delivery_limit_for,
    delivery_record,
    delivery_reset,
)
from queueworks.reliability.effects import effect_apply
from queueworks.reliability.liveness import QueueLiveness, queues_liveness

__all__ = [
    "DeadLetter",
    "DeliveryLimitExceeded",
    "QueueLiveness",
    "RetriesExhausted",
    "dead_letter_discard",
    "dead_letter_requeue",
    "dead_letters_declare",
    "dead_letters_list",
    "delayed_task_store",
    "delayed_tasks_dispatch",
    "delivery_limit_for",
    "delivery_record",
    "delivery_reset",
    "effect_apply",
    "long_delay_seconds",
    "queues_liveness",
]
