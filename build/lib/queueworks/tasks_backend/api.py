"""Django's task API, from wherever this Django has it: ``django.tasks``
(Django 6.0+) or the ``django-tasks`` backport (Django 5.2).  Both are public
APIs with the same shape; only a few names differ."""

from __future__ import annotations

try:  # Django 6.0 and later.
    from django.tasks import DEFAULT_TASK_QUEUE_NAME, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import (
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    SOURCE = "django.tasks"
except ImportError:  # Django 5.2 with the django-tasks backport.
    from django_tasks import DEFAULT_TASK_QUEUE_NAME, task_backends  # noqa: F401
    from django_tasks.backends.base import BaseTaskBackend  # noqa: F401
    from django_tasks.base import (  # noqa: F401
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django_tasks.exceptions import InvalidTaskError as InvalidTask  # noqa: F401
    from django_tasks.exceptions import TaskResultDoesNotExist  # noqa: F401
    from django_tasks.signals import task_enqueued, task_finished, task_started  # noqa: F401
    from django_tasks.utils import normalize_json  # noqa: F401

    SOURCE = "django_tasks"
