"""The tasks the Task API may start, with a declared schema for their arguments.

Only names listed in ``ALLOWLIST`` can be started or re-run over HTTP.  Each
entry declares its parameters (order, type, required, range) and the queues it
may be sent to; the first queue is its route in the topology and an override
must be one of the others.  ``python manage.py check`` verifies every entry
names a registered task and declared, consumed queues.

The package allows its own diagnostic tasks (``BUILTIN``); a project allows
its tasks, Celery tasks and Django ``@task`` functions alike, by dotted name
in the sequence QUEUEWORKS_TASKAPI_ALLOWLIST names (docs/task-api.md).
"""

from __future__ import annotations

from queueworks.conf import import_dotted
from queueworks.conf import settings as queueworks_settings
from queueworks.taskapi.allowed_task import TYPES, AllowedTask, Param  # noqa: F401  (re-exported)


def _entries(*tasks: AllowedTask) -> dict[str, AllowedTask]:
    return {task.name: task for task in tasks}


BUILTIN: tuple[AllowedTask, ...] = (
    AllowedTask(
        "queueworks.taskapi.tasks.diagnose",
        "Diagnostic: sleeps `seconds` reporting PROGRESS, then succeeds, or fails "
        "with DiagnosticError(message) when `fail` is true.",
        params=(
            Param("seconds", "float", required=False, minimum=0, maximum=50, default=0,
                  help="How long to run (PROGRESS every second)."),
            Param("fail", "bool", required=False, default=False,
                  help="Raise DiagnosticError at the end instead of returning."),
            Param("message", "str", required=False, max_length=200, default="diagnostic",
                  help="Returned, or the error message when failing."),
        ),
        extra_queues=("celery", "heavy"),
    ),
    AllowedTask(
        "queueworks.core.tasks.probe",
        "Records which worker and queue ran it.",
        params=(Param("token", "str", max_length=100),),
        extra_queues=("celery",),
    ),
    AllowedTask(
        "queueworks.core.tasks.heavy_probe",
        "Like probe, on the heavy worker, sleeping `seconds`.",
        params=(
            Param("token", "str", max_length=100),
            Param("seconds", "float", required=False, minimum=0, maximum=600, default=1.0),
        ),
    ),
)


def _project_entries() -> tuple[AllowedTask, ...]:
    """The host project's entries: QUEUEWORKS_TASKAPI_ALLOWLIST names a
    sequence of AllowedTask (``module:ATTRIBUTE``)."""
    path = queueworks_settings.TASKAPI_ALLOWLIST
    return tuple(import_dotted(path)) if path else ()


ALLOWLIST: dict[str, AllowedTask] = _entries(*BUILTIN, *_project_entries())


def allowed(name: str) -> AllowedTask | None:
    return ALLOWLIST.get(name)
