"""Request and response shapes of the Task API (also its OpenAPI schema)."""

from rest_framework import serializers

from queueworks.taskapi.allowlist import ALLOWLIST
from queueworks.taskapi.selectors import KNOWN_STATES
from queueworks.taskapi.services import CANCEL_SIGNALS

TASK_NAMES = sorted(ALLOWLIST)


class StrictBooleanField(serializers.BooleanField):
    """Only JSON true/false (DRF's BooleanField also takes "yes", 1, ...)."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


class StrictIntegerField(serializers.IntegerField):
    """Only a JSON number (DRF's IntegerField also takes the string "5")."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """Only a JSON number (DRF's FloatField also takes the string "1.5")."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class TaskStartSerializer(serializers.Serializer):
    task = serializers.ChoiceField(
        choices=TASK_NAMES,
        error_messages={"invalid_choice": "'{input}' is not an allowlisted task."},
        help_text=f"An allowlisted task name: {', '.join(TASK_NAMES)}. "
                  "GET /api/v1/tasks/allowed/ lists each with its argument schema and queues.",
    )
    args = serializers.ListField(
        child=serializers.JSONField(), required=False, default=list, max_length=20,
        help_text="Positional arguments, checked against the task's schema.",
    )
    kwargs = serializers.DictField(
        child=serializers.JSONField(), required=False, default=dict,
        help_text="Keyword arguments, checked against the task's schema.",
    )
    queue = serializers.CharField(
        required=False, max_length=200,
        help_text="Override queue; must be one the task is allowed on. Default: its route.",
    )
    priority = StrictIntegerField(
        required=False, min_value=0, max_value=9,
        help_text="0 (lowest) to 9 (highest), on queues declared with priorities.",
    )
    countdown = StrictFloatField(
        required=False, min_value=0,
        help_text="Run no earlier than this many seconds from now.",
    )
    eta = serializers.DateTimeField(
        required=False,
        help_text="Run no earlier than this ISO-8601 time (future; without an offset it is "
                  "taken in the server's TIME_ZONE).",
    )

    def validate_kwargs(self, value):
        if len(value) > 20:
            raise serializers.ValidationError("at most 20 keyword arguments")
        return value


class TaskTicketSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    task = serializers.CharField()
    queue = serializers.CharField()
    state = serializers.CharField()
    status_url = serializers.URLField()
    rerun_of = serializers.CharField(required=False)
    # Present (true) when a unique task's key was held: task_id is the holder's.
    duplicate = serializers.BooleanField(required=False)
    published = serializers.BooleanField(
        required=False,
        help_text="true: the broker took the message.  false: it did not in time; the task "
                  "is accepted all the same and the outbox publishes it shortly (it runs; "
                  "cancel it if it is no longer wanted).")


class ErrorInfoSerializer(serializers.Serializer):
    type = serializers.CharField(allow_null=True)
    module = serializers.CharField(allow_null=True)
    message = serializers.CharField()
    traceback = serializers.CharField(required=False, help_text="Only for users with the permission taskapi.view_all_tasks.")


class ProgressSerializer(serializers.Serializer):
    current = serializers.FloatField()
    total = serializers.FloatField()
    percent = serializers.FloatField(allow_null=True)


class CancellationSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    by = serializers.CharField(allow_null=True)
    terminate = serializers.BooleanField()
    signal = serializers.CharField(allow_null=True)


class TaskSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    task = serializers.CharField()
    state = serializers.ChoiceField(choices=KNOWN_STATES)
    queue = serializers.CharField()
    priority = serializers.IntegerField(allow_null=True)
    eta = serializers.DateTimeField(allow_null=True)
    worker = serializers.CharField(allow_null=True)
    args = serializers.JSONField(allow_null=True)
    kwargs = serializers.JSONField(allow_null=True)
    result = serializers.JSONField(allow_null=True)
    error = ErrorInfoSerializer(allow_null=True)
    progress = ProgressSerializer(allow_null=True)
    retries = serializers.IntegerField()
    date_created = serializers.DateTimeField(allow_null=True)
    date_started = serializers.DateTimeField(allow_null=True)
    date_done = serializers.DateTimeField(allow_null=True)
    cancellation = CancellationSerializer(allow_null=True)
    rerun_of = serializers.CharField(allow_null=True)
    requested_by = serializers.CharField(allow_null=True)
    status_url = serializers.URLField()


class TaskFilterSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=KNOWN_STATES, required=False)
    task = serializers.CharField(required=False, max_length=255)
    queue = serializers.CharField(required=False, max_length=200)
    since = serializers.DateTimeField(required=False, help_text="ISO-8601; created at or after.")
    # Read by the paginator; validated here so a bad value is a 400, not ignored.
    page = serializers.IntegerField(required=False, min_value=1, help_text="Page number (from 1).")
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200,
                                         help_text="Items per page (max 200).")


class TaskCancelSerializer(serializers.Serializer):
    terminate = StrictBooleanField(
        required=False, default=False,
        help_text="Also stop the task if it is running (sends `signal` to its process).",
    )
    signal = serializers.ChoiceField(choices=CANCEL_SIGNALS, required=False, default="SIGTERM")


class CancelOutcomeSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    state = serializers.CharField()
    terminate = serializers.BooleanField()
    detail = serializers.CharField()
    status_url = serializers.URLField()


class ParamSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    required = serializers.BooleanField()
    minimum = serializers.FloatField(required=False)
    maximum = serializers.FloatField(required=False)
    max_length = serializers.IntegerField(required=False)
    default = serializers.JSONField(required=False)
    help = serializers.CharField(required=False)


class AllowedTaskSerializer(serializers.Serializer):
    task = serializers.CharField()
    description = serializers.CharField()
    queues = serializers.ListField(child=serializers.CharField())
    params = ParamSerializer(many=True)


class WorkerTaskSerializer(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    args = serializers.JSONField(allow_null=True)
    kwargs = serializers.JSONField(allow_null=True)
    time_start = serializers.FloatField(allow_null=True)
    worker_pid = serializers.IntegerField(allow_null=True)
    eta = serializers.CharField(required=False, allow_null=True)
    priority = serializers.IntegerField(required=False, allow_null=True)


class PoolSerializer(serializers.Serializer):
    implementation = serializers.CharField(allow_null=True)
    max_concurrency = serializers.IntegerField(allow_null=True)
    processes = serializers.ListField(child=serializers.IntegerField(), allow_null=True)


class WorkerSerializer(serializers.Serializer):
    hostname = serializers.CharField(allow_null=True)
    program = serializers.CharField()
    status = serializers.ChoiceField(choices=["online", "unreachable"])
    queues = serializers.ListField(child=serializers.CharField(), allow_null=True)
    active = WorkerTaskSerializer(many=True)
    reserved = WorkerTaskSerializer(many=True)
    scheduled = WorkerTaskSerializer(many=True)
    pool = PoolSerializer(allow_null=True)
    uptime = serializers.IntegerField(allow_null=True, help_text="Seconds.")


class QueueSerializer(serializers.Serializer):
    name = serializers.CharField()
    purpose = serializers.CharField()
    exists = serializers.BooleanField()
    messages_ready = serializers.IntegerField(allow_null=True)
    consumers = serializers.IntegerField(allow_null=True)
    expected_consumers = serializers.ListField(child=serializers.CharField())
    max_priority = serializers.IntegerField(allow_null=True)
    no_consumers = serializers.BooleanField()
    alert = serializers.CharField(allow_null=True)


class ApiErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Problems by request field (body, task, args, kwargs, queue, ...).",
    )
