from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self):
        from celery.signals import before_task_publish

        from apps.ops.signals import stamp_publish_time

        # Every message gets its publish time, so RabbitMQ's management API can
        # report the age of the oldest waiting message (head_message_timestamp).
        before_task_publish.connect(stamp_publish_time, weak=False,
                                    dispatch_uid="ops.stamp_publish_time")
