"""The worker side of Django's task API: each ``@task`` function the topology
routes runs as a Celery task of the same dotted name.

So it is one of the project's tasks in every respect: the topology's queue,
time limits, acks late and delivery limit; the results table, ``/ops/``,
``/metrics`` and Flower by name; the Task API's allowlist by dotted path.
"""

from __future__ import annotations

import importlib
import inspect
import logging

from django.utils import timezone

from queueworks.tasks_backend import api

logger = logging.getLogger(__name__)
# Return values that normalize_json would give back unchanged.
SCALARS = (type(None), bool, int, float, str)


def django_task_at(path: str):
    """The Django ``Task`` object a dotted path names, or None."""
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    found = getattr(module, attribute, None)
    return found if isinstance(found, api.Task) else None


def celery_task_for(app, django_task):
    """The Celery task that runs ``django_task`` (registered on first use)."""
    name = django_task.module_path
    if name in app.tasks:
        return app.tasks[name]

    def run(self, *args, **kwargs):
        return execute(self, django_task, args, kwargs)

    run.__name__ = django_task.func.__name__
    run.__doc__ = django_task.func.__doc__
    # The function's own parameters (without Django's context), so that what
    # reads a call's arguments by name sees them: the limits' keys
    # (queueworks/limits) and their system check.
    parameters = list(inspect.signature(django_task.func).parameters.values())
    if django_task.takes_context:
        parameters = parameters[1:]
    run.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *parameters])
    return app.task(name=name, bind=True, shared=False, lazy=False)(run)


def register_routed_django_tasks(app) -> list[str]:
    """Register every ``@task`` function the topology routes (worker start)."""
    from queueworks.conf import topology

    registered = []
    for route in topology().routes:
        if route.task in app.tasks:
            continue
        django_task = django_task_at(route.task)
        if django_task is not None:
            celery_task_for(app, django_task)
            registered.append(route.task)
    return registered


def execute(celery_task, django_task, args, kwargs):
    """Run one call, with Django's task_started/task_finished signals and,
    for ``takes_context``, a context whose ``attempt`` counts redeliveries."""
    from queueworks.reliability.models import TaskDelivery
    from queueworks.tasks_backend.backend import QueueworksBackend

    request = celery_task.request
    deliveries = 1
    if (request.delivery_info or {}).get("redelivered"):
        # Only a redelivered message has a count (queueworks/reliability):
        # a first delivery costs no query.
        deliveries = (TaskDelivery.objects.filter(task_id=request.id)
                      .values_list("deliveries", flat=True).first() or 1)
    now = timezone.now()
    worker = request.hostname or ""
    result = api.TaskResult(
        task=django_task, id=request.id, status=api.TaskResultStatus.RUNNING,
        enqueued_at=None, started_at=now, finished_at=None, last_attempted_at=now,
        args=list(args), kwargs=dict(kwargs), backend=django_task.backend,
        errors=[], worker_ids=[worker] * (deliveries + (request.retries or 0)),
    )
    api.task_started.send(sender=QueueworksBackend, task_result=result)
    try:
        if django_task.takes_context:
            value = django_task.call(api.TaskContext(task_result=result), *args, **kwargs)
        else:
            value = django_task.call(*args, **kwargs)
        if not isinstance(value, SCALARS):  # already JSON as it is: the common case
            value = api.normalize_json(value)
    except BaseException as exc:
        from traceback import format_exception

        object.__setattr__(result, "finished_at", timezone.now())
        object.__setattr__(result, "status", api.TaskResultStatus.FAILED)
        result.errors.append(api.TaskError(
            exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
            traceback="".join(format_exception(exc))))
        api.task_finished.send(sender=QueueworksBackend, task_result=result)
        raise
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "status", api.TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "_return_value", value)
    api.task_finished.send(sender=QueueworksBackend, task_result=result)
    return value
