from django.apps import AppConfig


class ReliabilityConfig(AppConfig):
    name = "queueworks.reliability"
    label = "reliability"
    verbose_name = "Delivery guarantees: idempotent effects, delivery limits, dead letters"
