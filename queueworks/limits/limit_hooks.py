"""Worker-side hooks of the concurrency limits: a revoked call, and a run
killed at its hard time limit, give their slot on at once.

A parked call that the Task API cancels is woken like any other (its row
holds its message); the worker then skips the message as revoked
(queueworks/taskapi/signals.py) and Celery sends ``task_revoked`` instead of
running it.  Without this hook the slot handed to it would stay held until
its lease ends.

A pool process killed at the hard time limit (prefork) never reaches the
end of ``ReliableTask.__call__``; Celery's main process then sends
``task_failure`` with ``TimeLimitExceeded``.  When the message will not run
again (``unique_hooks.timed_out_for_good``) its slot is handed on there.
"""

import logging

from celery.signals import task_failure, task_revoked
from django.db import DatabaseError, transaction

logger = logging.getLogger(__name__)


@task_revoked.connect(dispatch_uid="limits.release_revoked_slot")
def release_revoked_slot(sender=None, request=None, **kwargs):
    task_id = getattr(request, "id", None)
    name = getattr(request, "name", None) or getattr(sender, "name", None)
    _slot_hand_on(name, task_id)


@task_failure.connect(dispatch_uid="limits.release_timed_out_slot")
def release_timed_out_slot(sender=None, task_id=None, exception=None, **kwargs):
    from queueworks.limits.unique_hooks import fresh_connection, timed_out_for_good

    if timed_out_for_good(sender, exception):
        fresh_connection()
        _slot_hand_on(getattr(sender, "name", None), task_id)


def _slot_hand_on(name, task_id) -> None:
    from queueworks.limits.concurrency import slot_release
    from queueworks.limits.handoff import waker_for
    from queueworks.limits.models import ConcurrencySlot, LimitWaiter
    from queueworks.limits.rules import task_limits

    limits = task_limits(name) if task_id and name else None
    if limits is None or limits.concurrency is None:
        return
    from queueworks.conf import celery_app

    task = celery_app().tasks.get(name)
    try:
        keys = list(ConcurrencySlot.objects.filter(limit=limits.concurrency_name,
                                                   task_id=task_id).values_list("key", flat=True))
        for key in keys:
            with transaction.atomic():
                slot_release(limit=limits.concurrency_name, key=key, task_id=task_id,
                             rule=limits.concurrency, wake=waker_for(task, limits, key))
        LimitWaiter.objects.filter(limit=limits.concurrency_name, task_id=task_id).delete()
    except DatabaseError:
        logger.exception("Could not give back the slot of %s; its lease frees it.", task_id)
