"""The package's own tasks an operator may start through the Task API.

They may be sent to their route in the host's topology (``builtin_routes``)
and nowhere else: the package does not know the host's other queues.  A
project that wants them on more lanes lists them again in its own allowlist
(QUEUEWORKS_TASKAPI_ALLOWLIST), e.g. ``replace(DIAGNOSE, extra_queues=("heavy",))``;
its entry takes the place of the package's.
"""

from __future__ import annotations

from queueworks.taskapi.allowed_task import AllowedTask, Param

DIAGNOSE = AllowedTask(
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
)
PROBE = AllowedTask(
    "queueworks.core.tasks.probe",
    "Records which worker and queue ran it.",
    params=(Param("token", "str", max_length=100),),
)
HEAVY_PROBE = AllowedTask(
    "queueworks.core.tasks.heavy_probe",
    "Like probe, sleeping `seconds` (for a lane of long tasks).",
    params=(
        Param("token", "str", max_length=100),
        Param("seconds", "float", required=False, minimum=0, maximum=600, default=1.0),
    ),
)

# Allowed in every project; HEAVY_PROBE only where the project lists it.
BUILTIN: tuple[AllowedTask, ...] = (DIAGNOSE, PROBE)
