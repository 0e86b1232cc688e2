"""Tasks of the Task API: a diagnostic task operators can start, and cleanup."""

from celery import shared_task

from apps.taskapi.services import PROGRESS, diagnostic_run, task_results_cleanup


@shared_task(bind=True)
def diagnose(self, seconds: float = 0, fail: bool = False, message: str = "diagnostic") -> dict:
    """Runs ``seconds`` with PROGRESS updates; fails with DiagnosticError if ``fail``."""

    def report_progress(current: int, total: int) -> None:
        self.update_state(state=PROGRESS, meta={"current": current, "total": total})

    outcome = diagnostic_run(seconds=seconds, fail=fail, message=message,
                             on_progress=report_progress)
    return {
        **outcome,
        "hostname": self.request.hostname,
        "queue": (self.request.delivery_info or {}).get("routing_key") or "",
    }


@shared_task
def cleanup_results() -> dict:
    """Delete results (and Task API records) older than ``result_expires``."""
    return task_results_cleanup()
