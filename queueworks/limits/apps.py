from django.apps import AppConfig


class LimitsConfig(AppConfig):
    name = "queueworks.limits"
    label = "limits"
    verbose_name = "Limits across workers: rate, concurrency, fair sharing, unique tasks"
