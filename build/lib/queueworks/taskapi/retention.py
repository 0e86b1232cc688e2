"""How long task results are kept, and the cleanup that removes older ones.

Results and the Task API's records of them go together: an id older than
``result_expires`` is unknown afterwards (a 404), whichever row was left.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone
from django_celery_results.models import TaskResult

from queueworks.taskapi.models import TaskRecord
from queueworks.conf import celery_app

app = celery_app()

logger = logging.getLogger(__name__)


def result_expires() -> timedelta:
    expires = app.conf.result_expires
    if isinstance(expires, timedelta):
        return expires
    return timedelta(seconds=float(expires or 0))


def task_results_cleanup(*, now: datetime | None = None) -> dict[str, int]:
    """Delete results older than ``result_expires`` and the Task API records
    whose result is gone.

    Celery's ``celery.backend_cleanup`` (scheduled daily in the topology)
    deletes the results; this runs right after it (see ``signals``) and may be
    called on its own.  Like Celery, age is ``date_done`` (for a row the API
    wrote as PENDING: when it was accepted), so an id older than the expiry is
    a 404 afterwards.  Returns how many rows of each kind were deleted.
    """
    expires = result_expires()
    if not expires:
        return {"results": 0, "records": 0}
    cutoff = (now or timezone.now()) - expires
    results, _ = TaskResult.objects.filter(date_done__lt=cutoff).delete()
    records, _ = TaskRecord.objects.filter(accepted_at__lt=cutoff).exclude(
        task_id__in=TaskResult.objects.values("task_id"),
    ).delete()
    logger.info("Result cleanup: %d results, %d records older than %s", results, records, cutoff)
    return {"results": results, "records": records}
