"""`manage.py check` refuses an allowlist entry that could not run, and warns
when the Task API's OpenAPI schema could not be built."""

from django.core.checks import Error, Tags, Warning, register

from queueworks.taskapi.allowlist import ALLOWLIST, TYPES
from queueworks.conf import TOPOLOGY


def check_allowlist(allowlist, known_tasks) -> list[Error]:
    declared = set(TOPOLOGY.queue_names())
    consumed = {queue for worker in TOPOLOGY.workers for queue in worker.queues}
    errors = []
    for name, spec in allowlist.items():
        if name not in known_tasks:
            errors.append(Error(
                f"Task API allowlist names task '{name}', which does not exist.",
                hint="Fix the name in queueworks/taskapi/allowlist.py.", id="taskapi.E001",
            ))
        for queue in spec.queues:
            if queue not in declared or queue not in consumed:
                errors.append(Error(
                    f"Task API allows '{name}' on queue '{queue}', which is not a declared, "
                    "consumed queue.",
                    hint="Declare the queue and give it a worker, or drop it from the entry.",
                    id="taskapi.E002",
                ))
        route = TOPOLOGY.route_for(name)
        if route is not None and route.ignore_result:
            errors.append(Error(
                f"Task API allows '{name}', whose route in the topology ignores its result; "
                "the API could never report its state or result.",
                hint="Drop ignore_result from the route or the task from the allowlist.",
                id="taskapi.E004",
            ))
        for param in spec.params:
            if param.type not in TYPES:
                errors.append(Error(
                    f"Task API parameter '{name}.{param.name}' has unknown type '{param.type}'.",
                    id="taskapi.E003",
                ))
    return errors


@register(Tags.compatibility, "taskapi")
def allowlist_check(app_configs=None, **kwargs):
    from queueworks.core.checks import project_task_names

    return check_allowlist(ALLOWLIST, project_task_names())


SPECTACULAR_SCHEMA = "drf_spectacular.openapi.AutoSchema"


def check_schema_class(default_schema_class) -> list[Warning]:
    """The Task API's views describe themselves with drf-spectacular, which
    extends REST framework's DEFAULT_SCHEMA_CLASS: DRF's own makes
    /api/schema/ fail."""
    from drf_spectacular.openapi import AutoSchema

    if isinstance(default_schema_class, type) and issubclass(default_schema_class, AutoSchema):
        return []
    return [Warning(
        "REST framework's DEFAULT_SCHEMA_CLASS is not drf-spectacular's: the Task API's "
        "schema (/api/schema/) and its Swagger UI fail.",
        hint=f'REST_FRAMEWORK = {{"DEFAULT_SCHEMA_CLASS": "{SPECTACULAR_SCHEMA}"}}',
        id="taskapi.W001",
    )]


@register(Tags.compatibility, "taskapi")
def schema_class_check(app_configs=None, **kwargs):
    from rest_framework.settings import api_settings

    return check_schema_class(api_settings.DEFAULT_SCHEMA_CLASS)
