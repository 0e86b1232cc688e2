"""The retry policy for transient failures.

A task opts in with ``@shared_task(bind=True, **transient_retry())``:

* exceptions in ``TRANSIENT_ERRORS`` (network errors, timeouts, a locked
  database, or an explicit ``TransientError``) are retried with exponential
  backoff and full jitter: the n-th retry waits a random time in
  ``[0, min(maximum, factor * 2**n)]`` seconds; the task shows RETRY meanwhile;
* after ``max_retries`` retries the last failure is recorded as FAILURE and the
  message is dead-lettered (``ReliableTask``), so an operator can re-queue it
  once the cause is fixed (``manage.py dead_letters requeue``);
* every other exception is permanent: FAILURE at once, no retry.
"""

from __future__ import annotations

from celery.utils.time import get_exponential_backoff_interval
from django.db.utils import InterfaceError, OperationalError


class TransientError(Exception):
    """Raise for a failure that may go away by itself (HTTP 503, a timeout)."""


class PermanentError(Exception):
    """Raise for a failure that retrying cannot fix (bad input, 4xx)."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    OperationalError,
    InterfaceError,
)

BACKOFF_FACTOR = 2
BACKOFF_MAX = 300
MAX_RETRIES = 6


def transient_retry(*, factor: int = BACKOFF_FACTOR, maximum: int = BACKOFF_MAX,
                    max_retries: int = MAX_RETRIES,
                    errors: tuple[type[BaseException], ...] = TRANSIENT_ERRORS) -> dict:
    """Task options for Celery's autoretry with this policy."""
    return {
        "autoretry_for": errors,
        "dont_autoretry_for": (PermanentError,),
        "retry_backoff": factor,
        "retry_backoff_max": maximum,
        "retry_jitter": True,
        "max_retries": max_retries,
    }


def backoff_delay(*, retries: int, factor: int = BACKOFF_FACTOR,
                  maximum: int = BACKOFF_MAX, jitter: bool = True) -> int:
    """The countdown Celery uses before retry number ``retries + 1``."""
    return get_exponential_backoff_interval(
        factor=factor, retries=retries, maximum=maximum, full_jitter=jitter)


def backoff_ceiling(*, retries: int, factor: int = BACKOFF_FACTOR,
                    maximum: int = BACKOFF_MAX) -> int:
    """Upper bound of ``backoff_delay`` (what it is without jitter)."""
    return min(maximum, factor * (2 ** retries))

