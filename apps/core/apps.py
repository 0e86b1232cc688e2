from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Task system core"

    def ready(self):
        # Registers the topology system checks with Django's check framework.
        from apps.core import checks  # noqa: F401
