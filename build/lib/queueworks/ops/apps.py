from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "queueworks.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self):
        from celery.signals import before_task_publish, task_postrun

        from queueworks.ops.signals import prune_audit_after_backend_cleanup, stamp_publish_time

        # Every message gets its publish time, so RabbitMQ's management API can
        # report the age of the oldest waiting message (head_message_timestamp).
        before_task_publish.connect(stamp_publish_time, weak=False,
                                    dispatch_uid="ops.stamp_publish_time")
        task_postrun.connect(prune_audit_after_backend_cleanup, weak=False,
                             dispatch_uid="ops.prune_audit")
