"""POST /api/v1/tasks/bulk/: start many calls of one allowlisted task at once.

Same authentication, permission (task operators), JSON handling and error
format as the rest of the Task API.  One request, one batch on the broker, one
confirm wait: see ``queueworks.taskapi.bulk.tasks_start_bulk``.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from queueworks.taskapi.bulk import tasks_start_bulk
from queueworks.taskapi.serializers import ApiErrorSerializer, StrictIntegerField
from queueworks.taskapi.views import TaskApiView
from queueworks.conf import settings as queueworks_settings


class BulkStartSerializer(serializers.Serializer):
    task = serializers.CharField(max_length=255, help_text="An allowlisted task name.")
    kwargs_list = serializers.ListField(
        child=serializers.DictField(child=serializers.JSONField()),
        min_length=1, max_length=queueworks_settings.DISPATCH_BULK_MAX_ITEMS,
        help_text="One object of keyword arguments per task to start "
                  f"(at most {queueworks_settings.DISPATCH_BULK_MAX_ITEMS}).",
    )
    priority = StrictIntegerField(required=False, min_value=0, max_value=9,
                                        help_text="0 (lowest) to 9 (highest), for every task.")


class BulkTaskStartView(TaskApiView):
    throttle_scope = "bulk"
    audit_action = "task.bulk_start"

    def get_permissions(self):
        return self.operator_only()

    @extend_schema(
        operation_id="tasks_start_bulk", summary="Start many calls of one allowlisted task",
        request=BulkStartSerializer,
        responses={202: inline_serializer("BulkTicket", {
            "task": serializers.CharField(), "queue": serializers.CharField(),
            "count": serializers.IntegerField(),
            "task_ids": serializers.ListField(child=serializers.CharField()),
            "published": serializers.BooleanField(
                help_text="false: the broker did not take every message in time; the tasks "
                          "are accepted all the same and the outbox publishes the "
                          "unpublished_ids shortly"),
            "unpublished_ids": serializers.ListField(child=serializers.CharField()),
        }), 400: ApiErrorSerializer, 401: ApiErrorSerializer, 403: ApiErrorSerializer,
            415: ApiErrorSerializer, 429: ApiErrorSerializer,
            503: ApiErrorSerializer},
    )
    def post(self, request):
        task = request.data.get("task") if isinstance(request.data, dict) else None
        with self.audited(target=task if isinstance(task, str) else "") as detail:
            serializer = BulkStartSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            result = tasks_start_bulk(task=data["task"], kwargs_list=data["kwargs_list"],
                                      priority=data.get("priority"), user=request.user)
            detail.update(count=len(result.task_ids), queue=result.queue,
                          first_task_id=result.task_ids[0] if result.task_ids else None)
        response = Response(
            {"task": data["task"], "queue": result.queue, "count": len(result.task_ids),
             "task_ids": result.task_ids, "published": not result.pending_ids,
             "unpublished_ids": list(result.pending_ids)},
            status=status.HTTP_202_ACCEPTED,
        )
        # How long publishing and the broker's confirms took (browser dev tools
        # and bench/latency.py read it).
        response["Server-Timing"] = f"enqueue;dur={result.seconds * 1000:.3f}"
        return response
