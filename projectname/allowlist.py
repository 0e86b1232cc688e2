"""The example project's tasks that the Task API may start (QUEUEWORKS_TASKAPI_ALLOWLIST).

Each entry declares its parameters and the queues it may be sent to
(queueworks/taskapi/allowlist.py); document it in docs/task-api.md.
"""

from dataclasses import replace

from projectname.topology import test_support_enabled
from queueworks.taskapi.allowed_task import AllowedTask, Param
from queueworks.taskapi.diagnostics import DIAGNOSE, HEAVY_PROBE, PROBE

# Test-only entries, allowed only where the test-only app is installed.
TEST_SUPPORT_ALLOWLIST = (
    AllowedTask("apps.testing.django_tasks.echo", "Returns its argument (a Django @task).",
                params=(Param("value", "str", max_length=200),)),
    # Concurrency-limited per tenant_id (its route): the limit makes the key
    # required even though the schema does not (queueworks/limits).
    AllowedTask("apps.testing.tasks.limited_concurrency", "Sleeps ms, one run per tenant.",
                params=(Param("tenant_id", "str", required=False, max_length=100),
                        Param("ms", "int", required=False, minimum=0, maximum=2000))),
    AllowedTask("apps.testing.tasks.unique_job", "Unique by tenant_id; records each run.",
                params=(Param("tenant_id", "str", max_length=64),
                        Param("run_id", "str", max_length=64),
                        Param("seconds", "float", required=False, minimum=0, maximum=20),
                        Param("stuck", "bool", required=False))),
    AllowedTask("apps.testing.tasks.unique_job_early_ack",
                "Unique by tenant_id, acked on receipt; records each run.",
                params=(Param("tenant_id", "str", max_length=64),
                        Param("run_id", "str", max_length=64),
                        Param("seconds", "float", required=False, minimum=0, maximum=20))),
)

ALLOWLIST = (
    # The package's diagnostics, also on this project's other lanes.
    replace(DIAGNOSE, extra_queues=("celery", "heavy")),
    replace(PROBE, extra_queues=("celery",)),
    HEAVY_PROBE,
    AllowedTask(
        "apps.reports.tasks.build_period_report",
        "(Re)builds a stored period report, reporting PROGRESS per day.",
        params=(Param("report_id", "int", minimum=1, maximum=2**63 - 1),),
    ),
    AllowedTask("apps.reports.tasks.build_daily_report", "Builds yesterday's report."),
    AllowedTask("apps.reports.tasks.build_weekly_report", "Builds the last 7 days' report."),
    AllowedTask(
        "apps.notifications.tasks.send_notification",
        "Sends one stored notification (idempotent).",
        params=(Param("notification_id", "int", minimum=1, maximum=2**63 - 1),),
    ),
)
if test_support_enabled():
    ALLOWLIST += TEST_SUPPORT_ALLOWLIST
