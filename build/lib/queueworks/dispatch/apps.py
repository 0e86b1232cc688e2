from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "queueworks.dispatch"
    label = "dispatch"
    verbose_name = "Bulk task dispatch"
