"""System checks of the Django task backend: every ``@task`` function of the
installed apps that uses it can be enqueued (routed, on a declared queue,
with a priority its queue has)."""

from __future__ import annotations

import importlib

from django.apps import apps
from django.core.checks import Error

from queueworks.tasks_backend import api


def django_tasks_of_installed_apps():
    """(module, Task) of every ``tasks`` module of the installed apps.
    A module whose import is refused yields (module, the InvalidTask error)."""
    for config in apps.get_app_configs():
        module_name = f"{config.name}.tasks"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        except api.InvalidTask as exc:
            yield module_name, exc
            continue
        for value in vars(module).values():
            if isinstance(value, api.Task):
                yield module_name, value


def django_task_errors(backend) -> list[Error]:
    errors = []
    for module_name, found in django_tasks_of_installed_apps():
        if isinstance(found, Exception):
            errors.append(Error(f"{module_name}: {found}", id="queueworks_tasks.E001",
                                hint="Route the function in the topology, on a declared queue."))
            continue
        if found.backend != backend.alias:
            continue
        try:
            backend.validate_task(found)
        except api.InvalidTask as exc:
            errors.append(Error(f"{found.module_path}: {exc}", id="queueworks_tasks.E001",
                                hint="Route the function in the topology, on a declared queue."))
    return errors
