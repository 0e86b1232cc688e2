from django.apps import AppConfig


class LimitsConfig(AppConfig):
    name = "queueworks.limits"
    label = "limits"
    verbose_name = "Limits across workers: rate, concurrency, fair sharing, unique tasks"

    def ready(self):
        # System checks of the rate and concurrency limits.
        from queueworks.limits import checks_rate_concurrency  # noqa: F401
