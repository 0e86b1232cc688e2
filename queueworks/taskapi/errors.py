"""Errors the Task API services raise; the HTTP layer maps each to a status.

They carry ``fields`` (request field -> list of problems) so every refusal
names the field at fault, whether it reaches a user over HTTP or a caller of
the service functions (e.g. the ops dashboard).
"""

from __future__ import annotations


class TaskApiError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, detail: str, *, fields: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.fields = fields or {}


class TaskValidationError(TaskApiError):
    """The request is wrong (unknown task, bad args/queue/priority/eta...)."""

    status_code = 400
    code = "invalid"

    def __init__(self, fields: dict[str, list[str]]):
        summary = "; ".join(f"{field}: {' '.join(problems)}" for field, problems in fields.items())
        super().__init__(summary, fields=fields)


class TaskNotFound(TaskApiError):
    status_code = 404
    code = "not_found"


class TaskForbidden(TaskApiError):
    """The user may read the task but lacks the permission for this action."""

    status_code = 403
    code = "permission_denied"


class TaskConflict(TaskApiError):
    """The task exists but cannot do that now (finished, no longer allowlisted...)."""

    status_code = 409
    code = "conflict"


class BrokerUnavailable(TaskApiError):
    status_code = 503
    code = "broker_unavailable"
