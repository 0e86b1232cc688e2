"""`manage.py check` refuses an allowlist entry that could not run."""

from django.core.checks import Error, Tags, register

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
