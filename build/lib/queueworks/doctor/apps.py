from django.apps import AppConfig


class DoctorConfig(AppConfig):
    name = "queueworks.doctor"
    label = "doctor"
    verbose_name = "Diagnostics: `manage.py doctor`, beat heartbeat, mode and broker checks"

    def ready(self):
        # System checks (eager mode, RabbitMQ-only guarantees on Redis) and the
        # start-up warnings workers and beat log.
        from queueworks.doctor import checks, signals  # noqa: F401
        # Registered wherever Django runs (beat names it in a schedule).
        from queueworks.doctor import tasks  # noqa: F401
