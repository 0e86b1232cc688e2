"""The worker's monitoring events are published without publisher confirms.

With ``confirm_publish`` (queueworks/reliability), *every* publish on a connection
waits for the broker's confirm, including the worker's own monitoring events
(task-received/-started/-succeeded, three per task, for Flower and /ops/).
Those are transient notifications (not persistent, not task messages); a
confirm wait for each made the worker's main process spend most of its time
waiting on the broker.

Celery's Events step opens the event dispatcher's connection with the
consumer's public ``connection_for_write()`` (its only caller in the
worker).  ``EventsWithoutConfirms`` opens that connection with the transport
option ``confirm_publish`` off, so only the event dispatcher's connection
publishes without confirms.  Task messages and acks are not affected: tasks
published by a worker (retries, callbacks) still go through the app's
confirmed producer pool.
"""

from __future__ import annotations

#: Transport options for the event dispatcher's connection.
EVENTS_TRANSPORT_OPTIONS = {"confirm_publish": False}


class EventsWithoutConfirms:
    """Mixin for the worker's consumer class (queueworks/reliability/consumer.py)."""

    def connection_for_write(self, url=None, heartbeat=None):
        return self.ensure_connected(self.app.connection_for_write(
            url=url, heartbeat=heartbeat, transport_options=EVENTS_TRANSPORT_OPTIONS))
