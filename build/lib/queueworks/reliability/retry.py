"""The retry policy for transient failures.

A task opts in with ``@shared_task(bind=True, **transient_retry())`` (its base
class ``queueworks.reliability.base.ReliableTask`` applies the policy):

* exceptions in ``TRANSIENT_ERRORS`` (network errors, timeouts, a locked
  database, or an explicit ``TransientError``) are retried with exponential
  backoff and "equal jitter": the n-th retry waits a random time in
  ``[c/2, c]`` seconds with ``c = min(maximum, factor * 2**n)``; the task
  shows RETRY meanwhile;
* after ``max_retries`` retries the last failure is recorded as FAILURE and the
  message is dead-lettered (``ReliableTask``), so an operator can re-queue it
  once the cause is fixed (``manage.py dead_letters requeue``);
* every other exception is permanent: FAILURE at once, no retry.
"""

from __future__ import annotations

import random

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
    """Task options for this policy (applied by ``ReliableTask``)."""
    return {
        "transient_errors": errors,
        "backoff_factor": factor,
        "backoff_max": maximum,
        "max_retries": max_retries,
    }


def backoff_ceiling(*, retries: int, factor: int = BACKOFF_FACTOR,
                    maximum: int = BACKOFF_MAX) -> float:
    """The exponential part: ``min(maximum, factor * 2**retries)`` seconds."""
    return float(min(maximum, factor * (2 ** retries)))


def backoff_delay(*, retries: int, factor: int = BACKOFF_FACTOR, maximum: int = BACKOFF_MAX,
                  rng: random.Random | None = None) -> float:
    """Countdown before retry number ``retries + 1``: exponential, with jitter.

    "Equal jitter": half the ceiling is fixed, the other half random, so
    retries of many tasks that failed together spread out, yet each waits
    at least half its backoff (never an immediate hammering retry).
    """
    ceiling = backoff_ceiling(retries=retries, factor=factor, maximum=maximum)
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
