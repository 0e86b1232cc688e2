"""The base class of every task in the project (``Celery(task_cls=...)``).

It adds three guarantees around Celery's own ``Task``:

* **Bounded redelivery.**  Before a *redelivered* message runs, its delivery
  counter (per task id, in the database) is incremented; past the route's
  ``max_deliveries`` (default ``DELIVERY_LIMIT``) the message is rejected
  without requeue, so RabbitMQ dead-letters it instead of handing it to the
  next worker process to crash.  First deliveries cost nothing.
* **Transient failures retry with backoff; exhausted retries are
  dead-lettered.**  An exception in the task's ``transient_errors`` (see
  ``retry.transient_retry``) is retried with exponential backoff and jitter
  (state RETRY); still failing after ``max_retries`` retries, the result
  becomes FAILURE and the message goes to the dead-letter queue.  Any other
  exception is permanent: FAILURE, no retry.
* **Long countdowns never wait in a worker.**  ``apply_async`` with a
  countdown/ETA beyond ``RELIABILITY_LONG_DELAY_SECONDS`` stores the task in
  the database; ``dispatch_delayed_tasks`` (beat, every minute) publishes it
  when it is near.  A worker holding an unacked ETA message longer than
  RabbitMQ's ``consumer_timeout`` would have its channel closed, again and
  again.  Pass ``direct=True`` to bypass (tests use it to show the failure).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

# DjangoTask adds delay_on_commit/apply_async_on_commit (Celery's Django fixup
# would install it as the default base; task_cls replaces that default).
from celery.contrib.django.task import DjangoTask
from celery.exceptions import Retry

from queueworks.core.json_values import json_safe
from queueworks.reliability.retry import BACKOFF_FACTOR, BACKOFF_MAX, PermanentError, backoff_delay
from queueworks.conf import settings as queueworks_settings


def _delivery_finished(task_id: str) -> None:
    import logging

    from queueworks.reliability.delivery_limits import delivery_finished

    try:
        delivery_finished(task_id=task_id)
    except Exception:  # noqa: BLE001 - the task's own outcome stands
        logging.getLogger(__name__).warning(
            "Could not reset the delivery count of %s", task_id, exc_info=True)


def _at_least_one_second(options: dict) -> None:
    """Round a delay shorter than a second up to one second.

    On quorum queues Celery's native delayed delivery routes a delayed
    message by its whole seconds and refuses one that rounds down to 0
    (``countdown must be a positive number``); a retry after 0.5 s was
    rejected and its task dead-lettered.  Waiting up to half a second more
    costs nothing on any queue."""
    countdown = options.get("countdown")
    if countdown is not None and 0 < countdown < 1:
        options["countdown"] = 1
    eta = options.get("eta")
    if isinstance(eta, datetime):
        now = datetime.now(eta.tzinfo)
        if timedelta(0) < eta - now < timedelta(seconds=1):
            options["eta"] = now + timedelta(seconds=1)


def _coherent_time_limits(task_name: str, options: dict) -> None:
    """A call's own time limits, with a soft limit that fires before the hard
    one (queueworks/core/time_limits.py): without it, a hard limit under the
    worker's soft limit is only enforced at the soft one on prefork."""
    from queueworks.conf import topology
    from queueworks.core.time_limits import call_time_limits

    options["soft_time_limit"], options["time_limit"] = call_time_limits(
        topology(), task_name, soft_time_limit=options.get("soft_time_limit"),
        time_limit=options.get("time_limit"))


class ReliableTask(DjangoTask):
    #: Celery's default strategy, except on the bulk lane's solo pool, where
    #: plain messages run inline (queueworks/dispatch/lean.py).
    Strategy = "queueworks.dispatch.lean:lean_strategy"
    #: Execution starts allowed per message (None: settings / topology default).
    max_deliveries: int | None = None
    #: Exceptions retried with exponential backoff (see queueworks/reliability/retry.py).
    transient_errors: tuple = ()
    backoff_factor: int = BACKOFF_FACTOR
    backoff_max: int = BACKOFF_MAX

    def __call__(self, *args, **kwargs):
        request = self.request
        in_worker = not request.called_directly and not request.is_eager
        # Only a redelivered message is counted (delivery_record writes nothing
        # for a first delivery): the common path skips the call altogether.
        counted = bool(in_worker and self.acks_late
                       and (request.delivery_info or {}).get("redelivered"))
        if counted:
            from queueworks.reliability.delivery_limits import delivery_limit_for, delivery_record

            delivery_record(task_id=request.id, task_name=self.name, redelivered=True,
                            limit=delivery_limit_for(self))
        if in_worker and self._unique_route():
            from queueworks.limits.unique import unique_run_admit
            from queueworks.limits.unique_enqueue import UniqueSuperseded

            if not unique_run_admit(task_name=self.name, task_id=request.id, args=args,
                                    kwargs=kwargs):
                raise UniqueSuperseded(f"{self.name}[{request.id}]: another task holds its "
                                       "unique key")
        held = None
        try:
            # Rate and concurrency limits across all workers (queueworks/limits):
            # a call over its limit waits (published again, delayed, or parked
            # until a slot is handed to it) and ends here
            # (the finally below still settles its delivery count).
            held = _limits().limits_enter(self, request, args, kwargs) if in_worker else None
            return super().__call__(*args, **kwargs)
        except Retry:
            raise
        except Exception as exc:
            transient = tuple(self.transient_errors or ())
            if not transient or not isinstance(exc, transient) or isinstance(exc, PermanentError):
                raise
            retries = request.retries or 0
            if self.max_retries is not None and retries >= self.max_retries:
                if in_worker and self.acks_late:
                    from queueworks.reliability.delivery_limits import RetriesExhausted

                    raise RetriesExhausted(
                        f"{self.name}[{request.id}] still failing after {retries} "
                        f"retries: {exc.__class__.__name__}: {exc}"
                    ) from exc
                raise
            raise self.retry(exc=exc, countdown=backoff_delay(
                retries=retries, factor=self.backoff_factor, maximum=self.backoff_max))
        finally:
            # Reached only if the run ended (a dying process never gets
            # here): the limit counts starts that never finished.
            if counted:
                _delivery_finished(request.id)
            if held:
                _limits().limits_exit(self, request, held)

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None,
                    link=None, link_error=None, shadow=None, **options):
        direct = options.pop("direct", False)
        if options.get("time_limit") or options.get("soft_time_limit"):
            _coherent_time_limits(self.name, options)
        if not direct and self._unique_route() and not self.app.conf.task_always_eager:
            from queueworks.limits.unique_enqueue import unique_apply_async

            handled = unique_apply_async(self, args, kwargs, task_id=task_id, producer=producer,
                                         link=link, link_error=link_error, shadow=shadow,
                                         options=options)
            if handled is not None:
                return handled
        from queueworks.limits.fair import fair_routes

        if not direct and self.name in fair_routes():
            from queueworks.limits.fair import fair_queue_for

            options["queue"] = fair_queue_for(self.name, options.get("queue"), args, kwargs)
        _at_least_one_second(options)
        eta = self._far_eta(options)
        if direct or eta is None or self.app.conf.task_always_eager or link or link_error:
            return super().apply_async(args, kwargs, task_id=task_id, producer=producer,
                                       link=link, link_error=link_error, shadow=shadow,
                                       **options)
        from django.db import transaction

        from queueworks.reliability.delayed import delayed_task_store

        task_id = task_id or str(uuid.uuid4())
        stored = {k: v for k, v in options.items()
                  if k in ("queue", "routing_key", "priority", "expires", "headers",
                           "time_limit", "soft_time_limit")
                  and json_safe(v)}
        with transaction.atomic():
            delayed_task_store(task_name=self.name, task_id=task_id, args=list(args or []),
                               kwargs=dict(kwargs or {}), options=stored, eta=eta)
        return self.AsyncResult(task_id)

    def _unique_route(self) -> bool:
        """Whether the topology declares this task unique (queueworks/limits/unique.py)."""
        from queueworks.limits.unique import unique_for

        return unique_for(self.name) is not None

    def _far_eta(self, options) -> datetime | None:
        """The ETA when it is beyond the long-delay threshold, else None."""
        from django.conf import settings
        from django.utils import timezone

        threshold = float(queueworks_settings.RELIABILITY_LONG_DELAY_SECONDS)
        now = timezone.now()
        countdown, eta = options.get("countdown"), options.get("eta")
        if countdown is not None:
            when = now + timedelta(seconds=float(countdown))
        elif isinstance(eta, datetime):
            when = eta if timezone.is_aware(eta) else timezone.make_aware(eta)
        elif isinstance(eta, str):
            when = datetime.fromisoformat(eta)
            when = when if timezone.is_aware(when) else timezone.make_aware(when)
        else:
            return None
        if (when - now).total_seconds() <= threshold:
            return None
        options.pop("countdown", None)
        options.pop("eta", None)
        return when


_LIMITS = None


def _limits():
    """queueworks.limits.enforcement, imported once the apps are loaded."""
    global _LIMITS
    if _LIMITS is None:
        from queueworks.limits import enforcement

        _LIMITS = enforcement
    return _LIMITS

