from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "queueworks.core"
    label = "core"
    verbose_name = "Task system core"

    def ready(self):
        # Registers the system checks (topology, inventory, settings, installed
        # versions) with Django's check framework.
        from queueworks.conf import settings
        from queueworks.core import checks, checks_conf, checks_inventory, checks_versions  # noqa: F401
        from queueworks.core.profiles import DEVELOPMENT

        if settings.PROFILE == DEVELOPMENT:
            # Every admin page says so: development credentials, not for production.
            from django.contrib import admin

            admin.site.site_header = "Task system administration (DEVELOPMENT profile)"
            admin.site.site_title = "Task system (development)"
