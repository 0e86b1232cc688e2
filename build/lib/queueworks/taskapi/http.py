"""HTTP plumbing shared by the Task API views: permission, body limit, errors.

Every error leaves as JSON ``{"detail", "code", "errors": {field: [problem]}}``
with a 4xx status (503 when the broker is unreachable), never an HTML page.
"""

from __future__ import annotations

import io
import logging
import re

from amqp.exceptions import AMQPError
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import Http404
from kombu.exceptions import OperationalError
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from queueworks.taskapi.access import OPERATE_TASKS, OPERATORS_GROUP, VIEW_ALL_TASKS, VIEWERS_GROUP
from queueworks.core.error_reference import error_reference_logged
from queueworks.taskapi.errors import BrokerUnavailable, DatabaseUnavailable, TaskApiError
from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger(__name__)

class HoldsPermission(BasePermission):
    """An authenticated user holding ``permission`` (staff status grants nothing)."""

    permission = ""
    group = ""
    action = ""

    @property
    def message(self):
        return (f"{self.action} needs the '{self.permission}' permission "
                f"(member of the '{self.group}' group).")

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(self.permission))


class CanOperateTasks(HoldsPermission):
    permission, group = OPERATE_TASKS, OPERATORS_GROUP
    action = "Starting, cancelling and re-running tasks"


class CanViewAllTasks(HoldsPermission):
    permission, group = VIEW_ALL_TASKS, VIEWERS_GROUP
    action = "Reading the workers' running tasks"


class RequestTooLarge(exceptions.APIException):
    # 400 like every other refused body (naming ``body``), so a client and the
    # OpenAPI description see one status for "this body is not acceptable".
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "too_large"


# A JSON string (escapes included), and the brackets that open or close a level.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(body: bytes) -> int:
    """How deeply arrays/objects nest in ``body``, counted without parsing it.

    Counted before ``json.loads`` sees the body: the decoder recurses once per
    level and a few KB of ``[`` exhaust Python's stack (RecursionError).
    """
    depth = deepest = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub(b"", body)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


class LimitedJSONParser(JSONParser):
    """JSON bodies up to ``TASKAPI_MAX_BODY_BYTES`` bytes (larger ones are
    refused unread) nested at most ``TASKAPI_MAX_JSON_DEPTH`` levels."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = queueworks_settings.TASKAPI_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        too_large = RequestTooLarge(f"Request body is larger than {limit} bytes.")
        try:
            if declared and int(declared) > limit:
                raise too_large
        except ValueError:
            pass
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise too_large
        if not body.strip():
            return {}
        max_depth = queueworks_settings.TASKAPI_MAX_JSON_DEPTH
        if json_depth(body) > max_depth:
            raise exceptions.ParseError(
                f"JSON nested more than {max_depth} levels deep (arrays and objects).")
        try:
            return super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:  # the decoder's stack, whatever the count said
            raise exceptions.ParseError(
                f"JSON nested more than {max_depth} levels deep (arrays and objects).") from None


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail -> {"field" or "field.sub": ["message", ...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "body" if key in ("non_field_errors", "detail") and not prefix else str(key)
            full = f"{prefix}.{name}" if prefix else name
            for field, problems in _flatten(value, full).items():
                out.setdefault(field, []).extend(problems)
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)):
                for field, problems in _flatten(value, f"{prefix}[{index}]").items():
                    out.setdefault(field, []).extend(problems)
            else:
                out.setdefault(prefix or "body", []).append(str(value))
    else:
        out.setdefault(prefix or "body", []).append(str(detail))
    return out


def _summary(errors: dict[str, list[str]], fallback: str) -> str:
    if not errors:
        return fallback
    return "; ".join(f"{field}: {' '.join(problems)}" for field, problems in errors.items())


def _task_api_error_response(exc: TaskApiError) -> Response:
    body = {"detail": exc.detail, "code": exc.code, "errors": exc.fields}
    if exc.reference:
        body["reference"] = exc.reference
    return Response(body, status=exc.status_code)


def api_exception_handler(exc, context):
    if isinstance(exc, TaskApiError):
        return _task_api_error_response(exc)
    # The error's own text goes to the log under a reference, never into the answer.
    if isinstance(exc, (OperationalError, AMQPError)):
        return _task_api_error_response(BrokerUnavailable(f"{exc.__class__.__name__}: {exc}"))
    if isinstance(exc, DatabaseError):
        return _task_api_error_response(DatabaseUnavailable(f"{exc.__class__.__name__}: {exc}"))
    response = drf_exception_handler(exc, context)
    if response is None:
        reference = error_reference_logged(logger=logger, what="Task API: unexpected error",
                                           detail=f"{exc.__class__.__name__}: {exc}", exc=exc)
        return Response(
            {"detail": "Internal error; it has been logged.", "code": "error", "errors": {},
             "reference": reference},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        detail, code = _summary(errors, "Invalid input."), "invalid"
    elif isinstance(exc, exceptions.ParseError):
        errors = {"body": [str(exc.detail)]}
        detail, code = f"Malformed request body: {exc.detail}", "parse_error"
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        errors = {"content_type": [str(exc.detail)]}
        detail, code = str(exc.detail), "unsupported_media_type"
    elif isinstance(exc, RequestTooLarge):
        errors = {"body": [str(exc.detail)]}
        detail, code = str(exc.detail), "too_large"
    elif isinstance(exc, (Http404, exceptions.NotFound)):
        detail = str(getattr(exc, "detail", "") or "Not found.")
        errors, code = {}, "not_found"
    elif isinstance(exc, (PermissionDenied, exceptions.APIException)):
        detail = str(getattr(exc, "detail", "") or "Permission denied.")
        errors = {}
        code = getattr(getattr(exc, "detail", None), "code", None) or "error"
    else:
        detail, errors, code = "Error.", {}, "error"
    response.data = {"detail": detail, "code": code, "errors": errors}
    return response
