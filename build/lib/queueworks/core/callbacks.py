"""Success and failure callbacks for tasks, attached where the task is declared:

    @shared_task(bind=True, on_failure=notify_operators_on_failure,
                 on_success=log_task_success)
    def build_daily_report(self): ...

Celery calls them in the worker, with the task instance as ``self``:
``on_failure`` once the task has finally failed (not for a retry),
``on_success`` after it returned.  They must never raise: a callback that
fails would hide the task's own outcome, so errors are logged instead.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from queueworks.conf import settings as queueworks_settings

logger = logging.getLogger("queueworks.core.callbacks")
TRACEBACK_LINES = 30


def notify_operators_on_failure(task, exc, task_id, args, kwargs, einfo) -> None:
    """on_failure: mail OPERATOR_EMAILS what failed, where, with which input and why."""
    try:
        operators_notify_task_failure(
            task_name=task.name, task_id=task_id, args=args, kwargs=kwargs,
            error=f"{type(exc).__name__}: {exc}",
            traceback=str(getattr(einfo, "traceback", "") or ""),
            hostname=getattr(task.request, "hostname", None) or "?",
        )
    except Exception:  # noqa: BLE001 - see module docstring
        logger.exception("could not notify operators about failed task %s[%s]", task.name, task_id)


def log_task_success(task, retval, task_id, args, kwargs) -> None:
    """on_success: one log line per finished task, with its result summary."""
    logger.info("task %s[%s] succeeded on %s: %.200r", task.name, task_id,
                getattr(task.request, "hostname", None) or "?", retval)


def operators_notify_task_failure(*, task_name: str, task_id: str, args, kwargs, error: str,
                                  traceback: str, hostname: str) -> None:
    tail = "\n".join(traceback.rstrip().splitlines()[-TRACEBACK_LINES:])
    send_mail(
        f"[tasks] {task_name} failed: {error}"[:200],
        "\n".join([
            f"Task:     {task_name}",
            f"Task id:  {task_id}",
            f"Worker:   {hostname}",
            f"Args:     {args!r}",
            f"Kwargs:   {kwargs!r}",
            f"Error:    {error}",
            "",
            "The task will not be retried.  Its result (state FAILURE) is in the result",
            "backend; re-run it from the ops dashboard or the task API once the cause is fixed.",
            "",
            f"Traceback (last {TRACEBACK_LINES} lines):",
            tail,
        ]),
        settings.DEFAULT_FROM_EMAIL,
        queueworks_settings.OPERATOR_EMAILS,
    )
