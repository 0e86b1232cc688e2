"""The tasks the Task API may start, with a declared schema for their arguments.

Only names listed in ``ALLOWLIST`` can be started or re-run over HTTP.  Each
entry declares its parameters (order, type, required, range) and the queues it
may be sent to; the first queue is its route in the topology and an override
must be one of the others.  ``python manage.py check`` verifies every entry
names a registered task and declared, consumed queues.

The package allows its own diagnostic tasks (``BUILTIN``, on their routes:
queueworks/taskapi/diagnostics.py); a project allows
its tasks, Celery tasks and Django ``@task`` functions alike, by dotted name
in the sequence QUEUEWORKS_TASKAPI_ALLOWLIST names (docs/task-api.md).
"""

from __future__ import annotations

from queueworks.conf import import_dotted
from queueworks.conf import settings as queueworks_settings
from queueworks.taskapi.allowed_task import TYPES, AllowedTask, Param  # noqa: F401  (re-exported)
from queueworks.taskapi.diagnostics import BUILTIN


def _entries(*tasks: AllowedTask) -> dict[str, AllowedTask]:
    return {task.name: task for task in tasks}


def _project_entries() -> tuple[AllowedTask, ...]:
    """The host project's entries: QUEUEWORKS_TASKAPI_ALLOWLIST names a
    sequence of AllowedTask (``module:ATTRIBUTE``)."""
    path = queueworks_settings.TASKAPI_ALLOWLIST
    return tuple(import_dotted(path)) if path else ()


ALLOWLIST: dict[str, AllowedTask] = _entries(*BUILTIN, *_project_entries())


def allowed(name: str) -> AllowedTask | None:
    return ALLOWLIST.get(name)
