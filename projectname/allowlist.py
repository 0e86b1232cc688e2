"""The example project's tasks that the Task API may start (QUEUEWORKS_TASKAPI_ALLOWLIST).

Each entry declares its parameters and the queues it may be sent to
(queueworks/taskapi/allowlist.py); document it in docs/task-api.md.
"""

from queueworks.taskapi.allowed_task import AllowedTask, Param

ALLOWLIST = (
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
