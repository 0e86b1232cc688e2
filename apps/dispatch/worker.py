"""Worker bootstep: monitoring events are published without publisher confirms.

With ``confirm_publish`` (apps/reliability), *every* publish on a connection
waits for the broker's confirm, including the worker's own monitoring events
(task-received/-started/-succeeded, three per task, for Flower and /ops/).
Those are transient notifications (not persistent, not task messages); a
confirm wait for each made the worker's main process spend most of its time
waiting on the broker.  This step switches only the event dispatcher's channel
(its own connection) back to plain publishes.  Task messages and acks are not
affected: tasks published by a worker (retries, callbacks) still go through
the confirmed producer pool.
"""

from celery import bootsteps


class EventsWithoutConfirms(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.events:Events",)

    def start(self, c):
        dispatcher = getattr(c, "event_dispatcher", None)
        producer = getattr(dispatcher, "producer", None)
        if producer is None:
            return
        channel = producer.channel
        # py-amqp sets basic_publish = basic_publish_confirm on the instance
        # when the connection has confirm_publish; drop that override.
        vars(channel).pop("basic_publish", None)
