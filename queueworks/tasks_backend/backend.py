"""A backend for Django's task API that runs ``@task`` functions on the
topology's queues, through the Task API's outbox.

    TASKS = {"default": {"BACKEND": "queueworks.tasks_backend.QueueworksBackend"}}

* ``enqueue`` validates, then writes the outbox rows in the caller's
  transaction and publishes on commit (exactly the Task API's 202): once it
  returns and the transaction commits, the task is durable.
* ``queue_name`` ``"default"`` is the topology's route for the function;
  any other must be a declared queue.  A function the topology routes
  nowhere, or an unknown queue, is refused by ``validate_task`` (at
  decoration) and by a system check.
* ``priority`` maps onto the queue's AMQP priorities (``priorities.py``);
  a queue without priorities accepts only 0.
* ``run_after`` further ahead than the long-delay threshold waits in the
  database (RabbitMQ's consumer_timeout never sees it); nearer, it is a
  countdown.
* ``get_result`` reads what the workers write (``results.py``).
"""

from __future__ import annotations

import inspect

from django.core import checks
from django.utils import timezone

from queueworks.tasks_backend import api
from queueworks.tasks_backend.priorities import amqp_priority
from queueworks.tasks_backend.results import task_result_from_rows


class QueueworksBackend(api.BaseTaskBackend):
    supports_defer = True
    supports_async_task = False
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias, params):
        super().__init__(alias, params)
        # Django checks queue_name against these: the topology's queues (read
        # when first validated; the settings may still be loading here).
        self.queues = set()

    # -- validation -------------------------------------------------------------
    def _topology(self):
        from queueworks.conf import topology

        return topology()

    def queue_for(self, task) -> str:
        """The queue a call of ``task`` is published to (raises InvalidTask)."""
        topology = self._topology()
        declared = {queue.name: queue for queue in topology.queues}
        routed = {route.task: route.queue for route in topology.routes}
        if task.module_path not in routed:
            raise api.InvalidTask(
                f"{task.module_path} is routed nowhere: add Route({task.module_path!r}, "
                "<queue>) to the topology (QUEUEWORKS_TOPOLOGY).")
        if task.queue_name == api.DEFAULT_TASK_QUEUE_NAME:
            return routed[task.module_path]
        if task.queue_name not in declared:
            raise api.InvalidTask(
                f"queue_name {task.queue_name!r} of {task.module_path} is not a queue of the "
                f"topology (declared: {', '.join(sorted(declared))}).")
        return task.queue_name

    def validate_task(self, task) -> None:
        topology = self._topology()
        self.queues = {api.DEFAULT_TASK_QUEUE_NAME, *topology.queue_names()}
        # The topology's own words first: a route or queue named in the error.
        queue = self.queue_for(task)
        super().validate_task(task)
        max_priority = next(q.max_priority for q in topology.queues if q.name == queue)
        if task.priority != 0 and max_priority is None:
            raise api.InvalidTask(
                f"priority {task.priority} of {task.module_path}: queue {queue!r} has no "
                "priorities (declare Queue(max_priority=...)) and accepts only 0.")

    def validate_limit_keys(self, task, args, kwargs) -> None:
        """A call of a task with a keyed rate or concurrency limit
        (queueworks/limits) must pass the key argument."""
        from queueworks.limits.rules import missing_key_problems

        signature = inspect.signature(task.func)
        if task.takes_context:  # the context is not the caller's to pass
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        problems = missing_key_problems(task.module_path, signature, args, kwargs)
        if problems:
            raise api.InvalidTask(f"{task.module_path}: {'; '.join(problems)}.")

    # -- enqueue ---------------------------------------------------------------
    def enqueue(self, task, args, kwargs):
        from django.conf import settings

        from queueworks.conf import celery_app
        from queueworks.taskapi.errors import TaskValidationError
        from queueworks.taskapi.services import recorded_task_accept
        from queueworks.tasks_backend.worker import celery_task_for

        self.validate_task(task)
        queue = self.queue_for(task)
        declared = next(q for q in self._topology().queues if q.name == queue)
        args, kwargs = api.normalize_json(list(args)), api.normalize_json(dict(kwargs))
        self.validate_limit_keys(task, args, kwargs)
        priority = None
        if declared.max_priority is not None:
            priority = amqp_priority(
                task.priority, max_priority=declared.max_priority,
                default=getattr(settings, "CELERY_TASK_DEFAULT_PRIORITY", 5))
        # The producer knows the Celery task too, so publishing builds the
        # same message a worker expects (its name, limits, result policy).
        celery_task_for(celery_app(), task)
        try:
            claim = recorded_task_accept(task_name=task.module_path, args=args, kwargs=kwargs,
                                         queue=queue, priority=priority, run_at=task.run_after)
        except TaskValidationError as exc:  # a unique task's call without its key
            raise api.InvalidTask(str(exc.detail)) from None
        if claim.duplicate:
            # Unique (queueworks/limits/unique.py): the task holding the key.
            return self.get_result(claim.task_id)
        task_id = claim.task_id
        now = timezone.now()
        result = api.TaskResult(
            task=task, id=task_id, status=api.TaskResultStatus.READY, enqueued_at=now,
            started_at=None, finished_at=None, last_attempted_at=None, args=args,
            kwargs=kwargs, backend=self.alias, errors=[], worker_ids=[],
        )
        api.task_enqueued.send(type(self), task_result=result)
        return result

    # -- results -----------------------------------------------------------------
    def get_result(self, result_id):
        from django_celery_results.models import TaskResult as ResultRow

        from queueworks.reliability.models import TaskDelivery
        from queueworks.taskapi.models import TaskRecord
        from queueworks.tasks_backend.worker import django_task_at

        record = TaskRecord.objects.filter(task_id=result_id).first()
        row = ResultRow.objects.filter(task_id=result_id).first()
        name = record.task_name if record else (row.task_name if row else None)
        task = django_task_at(name) if name else None
        if task is None:
            raise api.TaskResultDoesNotExist(result_id)
        deliveries = (TaskDelivery.objects.filter(task_id=result_id)
                      .values_list("deliveries", flat=True).first() or 0)
        return task_result_from_rows(task=task, backend_alias=self.alias, record=record,
                                     row=row, deliveries=deliveries)

    # -- checks -------------------------------------------------------------------
    def check(self, **kwargs):
        """Every routed-looking Django task must be routable; run by ``manage.py check``."""
        yield from super().check(**kwargs)
        from queueworks.tasks_backend.checks import django_task_errors

        yield from django_task_errors(self)


__all__ = ["QueueworksBackend", "checks"]
