"""How calls of a unique task are enqueued (queueworks/limits/unique.py).

Every path goes through the outbox writer
(``queueworks.taskapi.recorded.recorded_task_accept``), which writes the
claim in the same transaction as the task's record:

* the Task API's start (a duplicate answers 200 with the holder's id and
  ``"duplicate": true``; a new task 202 as always);
* the Django task backend's ``enqueue`` (the holder's ``TaskResult``);
* ``task.delay()`` / ``apply_async`` (``unique_apply_async``: the holder's
  ``AsyncResult``).  Options the outbox cannot keep (links, a producer, ...)
  are refused with ``UniqueEnqueueRefused``, never dropped.

The Task API's bulk start and ``tasks_enqueue_bulk`` refuse a unique task:
one batch would hold many claims in one transaction, for no gain over
starting them one by one.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from celery.exceptions import Ignore
from django.utils import timezone

# apply_async options a unique call keeps (in the outbox record).
_KEPT = frozenset({"queue", "priority", "countdown", "eta"})
# Set by Celery itself on every apply_async; nothing to keep.
_HARMLESS = frozenset({"routing_key", "exchange", "serializer"})


class UniqueEnqueueRefused(TypeError):
    """A call of a unique task that the outbox cannot record as asked."""


class UniqueSuperseded(Ignore):
    """This message's unique key is held by another task: it runs nothing."""

    unique_superseded = True


def unique_apply_async(task, args, kwargs, *, task_id, producer, link, link_error, shadow,
                       options):
    """``apply_async`` of a unique task; None: publish plainly (a retry of the holder)."""
    from queueworks.limits.models import UniqueClaim
    from queueworks.limits.unique import unique_for, unique_key
    from queueworks.conf import topology
    from queueworks.taskapi.services import recorded_task_accept

    if task_id and UniqueClaim.objects.filter(task_id=task_id).exists():
        return None  # the holder itself again: a retry or a republish keeps its claim
    refused = [name for name, value in (("producer", producer), ("link", link),
                                        ("link_error", link_error), ("shadow", shadow))
               if value is not None]
    refused += sorted(set(options) - _KEPT - _HARMLESS)
    if refused:
        raise UniqueEnqueueRefused(
            f"{task.name} is declared unique (its claim is kept with the task's outbox "
            f"record), which cannot keep the option(s) {', '.join(refused)}.")
    args, kwargs = list(args or ()), dict(kwargs or {})
    try:
        json.dumps([args, kwargs])
    except (TypeError, ValueError) as exc:
        raise UniqueEnqueueRefused(f"{task.name} is declared unique: its arguments must be "
                                   f"JSON ({exc}).") from None
    unique_key(task_name=task.name, unique=unique_for(task.name), args=args, kwargs=kwargs)
    claim = recorded_task_accept(
        task_name=task.name, args=args, kwargs=kwargs,
        queue=options.get("queue") or topology().queue_for(task.name),
        priority=options.get("priority"), run_at=_run_at(options), task_id=task_id)
    return task.AsyncResult(claim.task_id)


def _run_at(options) -> datetime | None:
    countdown, eta = options.get("countdown"), options.get("eta")
    if countdown is not None:
        return timezone.now() + timedelta(seconds=float(countdown))
    if isinstance(eta, str):
        eta = datetime.fromisoformat(eta)
    if isinstance(eta, datetime) and timezone.is_naive(eta):
        eta = timezone.make_aware(eta)
    return eta
