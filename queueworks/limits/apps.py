"""Limits across every worker on every host: rate limits, concurrency limits,
fair sharing between the callers of one queue, and unique tasks.

Declared per route in the topology (``Route(rate_limit=..., concurrency_limit=...,
fair_share=..., unique=...)``, the classes in ``declaration.py``) and enforced
with shared state in the project's database.
"""
from django.apps import AppConfig


class LimitsConfig(AppConfig):
    name = "queueworks.limits"
    label = "limits"
    verbose_name = "Limits across workers: rate, concurrency, fair sharing, unique tasks"

    def ready(self):
        # System checks of every limit, and the worker's hooks of unique tasks
        # and of concurrency slots.
        from django.core.signals import setting_changed

        from queueworks.limits import (  # noqa: F401
            checks_rate_concurrency, checks_unique_fair, limit_hooks, unique_hooks)
        from queueworks.limits.unique import limits_declarations_reset

        # A test that changes the topology setting reads the declarations anew.
        setting_changed.connect(limits_declarations_reset, dispatch_uid="limits.reset")
