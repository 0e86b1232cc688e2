"""A diagnostic task operators can start through the Task API, and the
outbox sweeper (beat)."""

from celery import shared_task

from queueworks.taskapi.outbox import outbox_sweep
from queueworks.taskapi.services import PROGRESS, diagnostic_run
from queueworks.core.tasks import delivery_queue


@shared_task(ignore_result=True)
def sweep_outbox() -> None:
    """Publish again accepted tasks the broker has not confirmed (queueworks/taskapi/outbox.py)."""
    outbox_sweep()


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
        "queue": delivery_queue(self.request),
    }
