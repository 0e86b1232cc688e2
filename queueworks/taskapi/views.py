"""The Task API (``/api/v1/``): thin views over ``services`` and ``selectors``."""

from __future__ import annotations

import time
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse
from django.urls import reverse
from django.utils.http import RFC3986_SUBDELIMS
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from queueworks.dispatch.services import last_enqueue_timing
from queueworks.taskapi import selectors, services
from queueworks.taskapi.allowlist import ALLOWLIST
from queueworks.ops.audit import audit_record, audited
from queueworks.ops.models import AuditEntry
from queueworks.taskapi.access import can_view_all
from queueworks.taskapi.errors import BrokerUnavailable, TaskApiError, TaskNotFound
from queueworks.taskapi.http import (
    CanOperateTasks,
    CanViewAllTasks,
    LimitedJSONParser,
    api_exception_handler,
)
from queueworks.taskapi.worker_snapshot import workers_snapshot
from queueworks.taskapi.serializers import (
    AllowedTaskSerializer,
    ApiErrorSerializer,
    CancelOutcomeSerializer,
    QueueSerializer,
    TaskCancelSerializer,
    TaskFilterSerializer,
    TaskSerializer,
    TaskStartSerializer,
    TaskTicketSerializer,
    WorkerSerializer,
)
from queueworks.conf import settings as queueworks_settings

ERRORS = {
    400: ApiErrorSerializer, 401: ApiErrorSerializer, 403: ApiErrorSerializer,
    415: ApiErrorSerializer, 429: ApiErrorSerializer,
}
NOT_FOUND = {404: ApiErrorSerializer}
CONFLICT = {409: ApiErrorSerializer}
BROKER_DOWN = {503: ApiErrorSerializer}
TASK_ID = OpenApiParameter("task_id", str, OpenApiParameter.PATH, description="The task id.")


class JsonOnly(DefaultContentNegotiation):
    """Always JSON, whatever the Accept header says (a browser gets JSON too)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class TaskApiView(APIView):
    """JSON in and out, authenticated, errors as {"detail", "code", "errors"}."""

    parser_classes = [LimitedJSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnly
    permission_classes = [IsAuthenticated]

    def get_exception_handler(self):
        return api_exception_handler

    def status_url(self, task_id: str) -> str:
        # A page of tasks needs one URL per row: resolve the route once per
        # request and quote each id as ``reverse`` would.
        if not task_id or "/" in task_id or task_id in (".", ".."):  # reverse's own rules
            return self.request.build_absolute_uri(reverse("taskapi:task-detail", args=[task_id]))
        if not hasattr(self, "_status_url_parts"):
            marker = "TASK-ID-MARKER"
            self._status_url_parts = self.request.build_absolute_uri(
                reverse("taskapi:task-detail", args=[marker])).split(marker)
        head, tail = self._status_url_parts
        return head + quote(task_id, safe=RFC3986_SUBDELIMS + "/~:@") + tail

    def operator_only(self):
        return [IsAuthenticated(), CanOperateTasks()]

    # The audit log's name for this view's POST (None: a read, not audited).
    audit_action: str | None = None

    def audited(self, *, target: str = ""):
        """Record the outcome of the block (see ``queueworks.ops.audit.audited``)."""
        return audited(action=self.audit_action, target=target, request=self.request, via="api",
                       refused=(TaskApiError, exceptions.ValidationError))

    def permission_denied(self, request, message=None, code=None):
        if self.audit_action and request.method == "POST" and request.user.is_authenticated:
            audit_record(action=self.audit_action, target=self._audit_target(), request=request,
                         outcome=AuditEntry.REFUSED, via="api", detail={"error": str(message)})
        super().permission_denied(request, message=message, code=code)

    def _audit_target(self) -> str:
        return str(self.kwargs.get("task_id", ""))


class TaskPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request):
        self.page_size = queueworks_settings.TASKAPI_PAGE_SIZE
        return super().get_page_size(request)


def _ticket(view: TaskApiView, ticket: services.TaskTicket, **extra) -> dict:
    body = {
        "task_id": ticket.task_id, "task": ticket.task, "queue": ticket.queue,
        "state": ticket.state, "status_url": view.status_url(ticket.task_id), **extra,
    }
    if ticket.published is not None:
        body["published"] = ticket.published
    return body


class TaskCollectionView(TaskApiView):
    audit_action = "task.start"

    def get_permissions(self):
        return self.operator_only() if self.request.method == "POST" else super().get_permissions()

    @extend_schema(
        operation_id="tasks_list", summary="List tasks (newest first)",
        parameters=[TaskFilterSerializer],
        responses={200: inline_serializer("PaginatedTaskList", {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": TaskSerializer(many=True),
        }), **ERRORS, **NOT_FOUND},
    )
    def get(self, request):
        # A plain dict: DRF reads an empty query value of a QueryDict as "not
        # given", and the schema forbids "?task=".
        filters = TaskFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        wanted = {key: value for key, value in filters.validated_data.items()
                  if key not in ("page", "page_size")}
        queryset = selectors.task_list(**wanted, user=request.user)
        paginator = TaskPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        rows = selectors.task_rows(page, include_traceback=can_view_all(request.user))
        for row in rows:
            row["status_url"] = self.status_url(row["task_id"])
        return paginator.get_paginated_response(rows)

    @extend_schema(
        operation_id="tasks_start", summary="Start an allowlisted task",
        request=TaskStartSerializer,
        responses={202: TaskTicketSerializer, 200: TaskTicketSerializer, **ERRORS,
                   **BROKER_DOWN},
        description="202: started (\"published\": false: the broker did not take the "
                    "message in time; the task is recorded and the outbox publishes it "
                    "later).  200: the task is declared unique and a task with the "
                    "same unique key is waiting or running; its id is returned with "
                    "\"duplicate\": true and nothing new was started.",
    )
    def post(self, request):
        started = time.perf_counter()
        task = request.data.get("task") if isinstance(request.data, dict) else None
        with self.audited(target=task if isinstance(task, str) else "") as detail:
            serializer = TaskStartSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            ticket = services.task_start(
                task=data["task"], args=data["args"], kwargs=data["kwargs"],
                queue=data.get("queue"), priority=data.get("priority"),
                countdown=data.get("countdown"), eta=data.get("eta"), user=request.user,
            )
            detail.update(task_id=ticket.task_id, queue=ticket.queue)
        if ticket.duplicate:
            return Response(_ticket(self, ticket, duplicate=True), status=status.HTTP_200_OK)
        response = Response(_ticket(self, ticket), status=status.HTTP_202_ACCEPTED)
        # start: validation, the PENDING rows and the publish; enqueue: the
        # publish alone; enqueue-cpu: the CPU time of that publish (the rest
        # of its duration was waiting).  bench/latency.py reads all three.
        timings = [f"start;dur={(time.perf_counter() - started) * 1000:.3f}"]
        enqueue = last_enqueue_timing(since=started)
        if enqueue is not None:
            timings += [f"enqueue;dur={enqueue.seconds * 1000:.3f}",
                        f"enqueue-cpu;dur={enqueue.cpu_seconds * 1000:.3f}"]
        response["Server-Timing"] = ", ".join(timings)
        return response


class TaskDetailView(TaskApiView):
    @extend_schema(
        operation_id="tasks_retrieve", summary="State, result or error, progress of one task",
        parameters=[TASK_ID], responses={200: TaskSerializer, **ERRORS, **NOT_FOUND},
    )
    def get(self, request, task_id: str):
        task = selectors.task_get(task_id=task_id, user=request.user,
                                  include_traceback=can_view_all(request.user))
        if task is None:
            raise TaskNotFound(f"No task with id '{task_id}'.", fields={"task_id": ["not found"]})
        task["status_url"] = self.status_url(task_id)
        return Response(task)


class TaskCancelView(TaskApiView):
    audit_action = "task.cancel"

    def get_permissions(self):
        return self.operator_only()

    @extend_schema(
        operation_id="tasks_cancel", summary="Cancel (revoke) a task",
        parameters=[TASK_ID], request=TaskCancelSerializer,
        responses={202: CancelOutcomeSerializer, **ERRORS, **NOT_FOUND, **CONFLICT,
                   **BROKER_DOWN},
    )
    def post(self, request, task_id: str):
        with self.audited(target=task_id) as detail:
            serializer = TaskCancelSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            outcome = services.task_cancel(
                task_id=task_id, terminate=serializer.validated_data["terminate"],
                signal=serializer.validated_data["signal"], user=request.user,
            )
            detail.update(terminate=outcome.terminate, signal=serializer.validated_data["signal"],
                          result=outcome.detail)
        return Response({
            "task_id": outcome.task_id, "state": outcome.state, "terminate": outcome.terminate,
            "detail": outcome.detail, "status_url": self.status_url(outcome.task_id),
        }, status=status.HTTP_202_ACCEPTED)


class TaskRerunView(TaskApiView):
    audit_action = "task.rerun"

    def get_permissions(self):
        return self.operator_only()

    @extend_schema(
        operation_id="tasks_rerun", summary="Start a new task with the same name and arguments",
        parameters=[TASK_ID], request=None,
        responses={202: TaskTicketSerializer, **ERRORS, **NOT_FOUND, **CONFLICT, **BROKER_DOWN},
    )
    def post(self, request, task_id: str):
        with self.audited(target=task_id) as detail:
            ticket = services.task_rerun(task_id=task_id, user=request.user)
            detail["new_task_id"] = ticket.task_id
        if ticket.duplicate:  # a unique task whose key is held: nothing new started
            return Response(_ticket(self, ticket, rerun_of=task_id, duplicate=True),
                            status=status.HTTP_200_OK)
        return Response(_ticket(self, ticket, rerun_of=task_id), status=status.HTTP_202_ACCEPTED)


class AllowedTasksView(TaskApiView):
    @extend_schema(
        operation_id="tasks_allowed", summary="Tasks that can be started, with argument schemas",
        responses={200: AllowedTaskSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        return Response([spec.describe() for spec in ALLOWLIST.values()])


class WorkersView(TaskApiView):
    """Reads the shared snapshot (queueworks/taskapi/worker_snapshot.py), never the broker."""

    def get_permissions(self):
        # Running tasks' arguments, whoever started them.
        return [IsAuthenticated(), CanViewAllTasks()]

    @extend_schema(
        operation_id="workers_list",
        summary="Workers: queues, active/reserved/scheduled, pool (a snapshot; `Age` header: "
                "its age in seconds)",
        responses={200: WorkerSerializer(many=True), **ERRORS, **BROKER_DOWN},
    )
    def get(self, request):
        snapshot = workers_snapshot()
        if snapshot is None:
            raise BrokerUnavailable(public="The workers have not answered yet; try again in a moment.")
        if snapshot.workers is None:
            # The refresh logged the broker's error; the snapshot keeps its answer.
            raise BrokerUnavailable(public=snapshot.error)
        # Rendered once per refresh; this request only authenticated, passed
        # the permission check and the throttle (DRF's ``initial``).
        response = HttpResponse(snapshot.body, content_type=JSONRenderer.media_type)
        response["Age"] = str(int(snapshot.age))
        return response


class QueuesView(TaskApiView):
    @extend_schema(
        operation_id="queues_list", summary="Queues: messages ready, consumers, expected programs",
        responses={200: QueueSerializer(many=True), **ERRORS, **BROKER_DOWN},
    )
    def get(self, request):
        return Response(selectors.queue_list())


class DocsView(SpectacularSwaggerView):
    """Swagger UI for /api/schema/; browsers without a session log in first."""

    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return super().get(request, *args, **kwargs)


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema (YAML, or JSON with ?format=json); errors as JSON."""

    # Signed-in users only, whatever drf-spectacular's SERVE_PERMISSIONS say:
    # the schema lists every task the API may start, with its arguments.
    permission_classes = [IsAuthenticated]

    def get_exception_handler(self):
        return api_exception_handler

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response
