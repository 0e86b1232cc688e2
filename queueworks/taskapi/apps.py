from django.apps import AppConfig


class TaskApiConfig(AppConfig):
    name = "queueworks.taskapi"
    label = "taskapi"
    verbose_name = "Task API"

    def ready(self):
        # Worker-side guards (cancelled ids never run, retries are counted)
        # and the allowlist system check.
        from queueworks.taskapi import checks, signals  # noqa: F401
