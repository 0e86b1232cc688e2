"""System checks that make a stranded-task topology fail loudly.

The classic silent failure with Celery is a task routed to a queue that no
worker consumes: it waits forever.  These checks run with every
``manage.py check`` (and so before ``migrate``, ``runserver`` and the test
suite) and name the queue or task at fault.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable

from django.core.checks import Error, Tags, register

from queueworks.conf import TOPOLOGY
from queueworks.conf import settings as queueworks_settings
from queueworks.core.time_limits import time_limit_problems
from queueworks.core.topology import Topology


def check_topology(topology: Topology, known_tasks: Iterable[str],
                   installed_apps: Iterable[str] | None = None) -> list[Error]:
    known_tasks = set(known_tasks)
    installed_apps = list(installed_apps) if installed_apps is not None else None
    declared = set(topology.queue_names())
    consumed = {queue for worker in topology.workers for queue in worker.queues}
    errors: list[Error] = []

    if topology.default_queue not in declared:
        errors.append(Error(
            f"The default queue '{topology.default_queue}' is not declared.",
            hint="Declare it in TOPOLOGY.queues.", id="topology.E001",
        ))
    for worker in topology.workers:
        for queue in worker.queues:
            if queue not in declared:
                errors.append(Error(
                    f"Worker '{worker.name}' consumes undeclared queue '{queue}'.",
                    hint="Declare the queue in TOPOLOGY.queues or remove it from the worker.",
                    id="topology.E002",
                ))
    for queue in topology.queue_names():
        if queue not in consumed:
            errors.append(Error(
                f"Queue '{queue}' has no worker program consuming it: "
                "tasks sent there would wait forever.",
                hint="Add the queue to a Worker's queues in projectname/topology.py.",
                id="topology.E003",
            ))
    for worker in topology.workers:
        if worker.processes > 1 and (worker.pool == "prefork" or worker.autoscale):
            errors.append(Error(
                f"Worker '{worker.name}' declares processes={worker.processes} with "
                f"{'autoscale' if worker.autoscale else 'the prefork pool'}: identical "
                "processes are for a single-process pool; a prefork pool grows by concurrency.",
                hint="Use concurrency (or autoscale) for prefork, or a single-process pool "
                     "(e.g. queueworks.dispatch.pool:SoloPool) with concurrency=1.",
                id="topology.E013"))
    if topology.balance is not None:
        errors += [
            Error(f"Balance: {problem}.", hint="See docs/balancer.md: balanced programs run "
                  "without autoscale (prefork, or single-process workers declared with "
                  "processes), with task events, within the budget.",
                  id="topology.E012")
            for problem in topology.balance.problems(topology)
        ]
    for route in topology.routes:
        if route.queue not in declared:
            errors.append(Error(
                f"Task '{route.task}' is routed to undeclared queue '{route.queue}'.",
                hint="Declare the queue or fix the route.", id="topology.E004",
            ))
        if route.task not in known_tasks and installed_apps is not None and (
                missing := _uninstalled_app_of(route.task, installed_apps)):
            errors.append(Error(
                f"Task '{route.task}' is routed in projectname/topology.py, but its app "
                f"'{missing}' is not in INSTALLED_APPS, so no worker loads its tasks module "
                "and the task would be refused as unknown.",
                hint=f"Add \"{missing}\" to INSTALLED_APPS in projectname/settings.py.",
                id="topology.E010",
            ))
        elif route.task not in known_tasks:
            errors.append(Error(
                f"Route names task '{route.task}', which does not exist.",
                hint="Fix the dotted task name or remove the route.", id="topology.E005",
            ))
    for entry in topology.schedules:
        if entry.task not in known_tasks:
            errors.append(Error(
                f"Beat entry '{entry.name}' names task '{entry.task}', which does not exist.",
                hint="Fix the dotted task name.", id="topology.E006",
            ))
        if entry.queue not in declared:
            errors.append(Error(
                f"Beat entry '{entry.name}' sends to undeclared queue '{entry.queue}'.",
                hint="Declare the queue or change the entry's queue.", id="topology.E007",
            ))
        elif entry.queue not in consumed:
            errors.append(Error(
                f"Beat entry '{entry.name}' sends to queue '{entry.queue}', "
                "which no worker consumes.",
                hint="Add the queue to a Worker's queues.", id="topology.E008",
            ))
    errors += [
        Error(problem, hint="Declare a soft limit below the hard limit (docs/topology.md, "
              "\"Time limits\").", id="topology.E014")
        for problem in time_limit_problems(topology)
    ]
    names = [worker.name for worker in topology.workers]
    for name in {name for name in names if names.count(name) > 1}:
        errors.append(Error(
            f"Worker name '{name}' is declared twice.", id="topology.E009",
        ))
    return errors


def _uninstalled_app_of(task_name: str, installed_apps: list[str]) -> str | None:
    """The package holding ``task_name``'s module when it exists but no installed
    app contains it (``apps.exports`` for ``apps.exports.tasks.export_csv``)."""
    module = task_name.rpartition(".")[0]
    if any(module == app or module.startswith(f"{app}.") for app in installed_apps):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    package = module.rpartition(".")[0] if module.endswith(".tasks") else module
    return package or module


def project_task_names() -> set[str]:
    """Every registered task name, after importing each app's tasks module.

    (Not ``app.loader.import_default_modules()``: inside a worker that fires
    the Django fixup, which runs these checks again, recursively.)
    """
    from django.apps import apps

    from queueworks.conf import celery_app
    app = celery_app()

    for config in apps.get_app_configs():
        module = f"{config.name}.tasks"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
    # Django @task functions the topology routes run as Celery tasks of the same name.
    from queueworks.tasks_backend.worker import register_routed_django_tasks

    register_routed_django_tasks(app)
    return set(app.tasks.keys())


def check_test_support_routes(routed_tasks: Iterable[str], installed_apps: Iterable[str]) -> list[Error]:
    """A test-only task (apps/testing) routed where that app is not installed.

    Production never installs it (the profile refuses DJANGO_TEST_SUPPORT),
    so a route to one of its tasks there is a leak of test code into the
    topology, however it got in.
    """
    test_support_app = queueworks_settings.TEST_SUPPORT_APP
    if not test_support_app or test_support_app in set(installed_apps):
        return []
    prefix = f"{test_support_app}."
    return [
        Error(
            f"Task '{task}' is test-only ({test_support_app}) but routed while "
            f"{test_support_app} is not installed.",
            hint="Route test-only tasks only while QUEUEWORKS_TEST_SUPPORT_APP is installed "
                 "(the example topology's TEST_SUPPORT_ROUTES); production refuses it.",
            id="topology.E011",
        )
        for task in sorted(set(routed_tasks)) if task.startswith(prefix)
    ]


@register(Tags.compatibility, "topology")
def topology_check(app_configs=None, **kwargs):
    from django.apps import apps
    from django.conf import settings

    installed = [config.name for config in apps.get_app_configs()]
    routed = [route.task for route in TOPOLOGY.routes] + list(settings.CELERY_TASK_ROUTES)
    return (check_topology(TOPOLOGY, project_task_names(), installed)
            + check_test_support_routes(routed, settings.INSTALLED_APPS))
