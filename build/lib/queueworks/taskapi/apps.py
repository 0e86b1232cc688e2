from django.apps import AppConfig


class TaskApiConfig(AppConfig):
    name = "queueworks.taskapi"
    label = "taskapi"
    verbose_name = "Task API"

    def ready(self):
        # Worker-side guards (cancelled ids never run, retries are counted)
        # and the allowlist system check.
        from queueworks.taskapi import checks, signals  # noqa: F401

        # The process publisher's confirms and refusals mark the outbox's records.
        from queueworks.dispatch.process_publisher import listen_to_confirms
        from queueworks.taskapi.outbox import confirm_marker

        listen_to_confirms(confirm_marker)
