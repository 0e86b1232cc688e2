from django.apps import AppConfig


class BalancerConfig(AppConfig):
    name = "queueworks.balancer"
    label = "balancer"
    verbose_name = "Process balancer"
