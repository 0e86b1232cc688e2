"""Errors the Task API services raise; the HTTP layer maps each to a status.

They carry ``fields`` (request field -> list of problems) so every refusal
names the field at fault, whether it reaches a user over HTTP or a caller of
the service functions (e.g. the ops dashboard).
"""

from __future__ import annotations

import logging
import sys

from queueworks.core.error_reference import error_reference_logged

logger = logging.getLogger(__name__)


class TaskApiError(Exception):
    status_code = 400
    code = "invalid"
    # Set when the failure's own text went to the log instead of the answer.
    reference: str | None = None

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


class ServiceUnavailable(TaskApiError):
    """A part the API depends on failed.  ``internal`` (its error text) is
    logged under a new reference, never answered: the answer is ``message``
    (or ``public``, a sentence written for the client) and the reference."""

    status_code = 503
    code = "unavailable"
    message = "A service the Task API depends on is unavailable; try again later."

    def __init__(self, internal: str = "", *, public: str | None = None):
        super().__init__(public or self.message)
        if internal:
            self.reference = error_reference_logged(
                logger=logger, what=f"Task API answered {self.code}", detail=internal,
                exc=sys.exc_info()[1], level=logging.WARNING)


class BrokerUnavailable(ServiceUnavailable):
    code = "broker_unavailable"
    message = "The message broker is unreachable or refused the request. Nothing was sent."


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    message = "The database is unreachable or refused the request; try again later."
