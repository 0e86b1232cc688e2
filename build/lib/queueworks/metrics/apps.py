from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "queueworks.metrics"
    label = "metrics"
    verbose_name = "Metrics"

    def ready(self):
        from queueworks.metrics import recorder

        recorder.connect()
