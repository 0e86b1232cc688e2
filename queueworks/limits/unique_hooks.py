"""Worker-side hooks that end a unique task's claim (queueworks/limits/unique.py).

The start check is in the task base class (``ReliableTask.__call__``), where
it can skip the run; these follow Celery's signals:

* ``task_postrun`` (the pool process, after the body): a final state frees
  the key; RETRY keeps it, waiting again; a rejection that requeues keeps it.
* ``task_revoked`` (the main process): a cancelled or expired message frees it.
* ``task_failure`` with ``TimeLimitExceeded`` (on prefork, the main process
  after it killed the pool process at the hard time limit): frees it at
  once, when the message is acknowledged (acks early, or acks late with
  ``acks_on_failure_or_timeout``, Celery's default); a requeued message keeps
  it for its redelivery.

A worker killed mid-run otherwise sends nothing: the claim's lease bounds it.
"""

import logging

from celery import states
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure, task_postrun, task_revoked
from django.db import DatabaseError

logger = logging.getLogger(__name__)

# Ends that keep the key: the task will run again.
_AGAIN = frozenset({states.RETRY})


def _unique(task_name) -> bool:
    from queueworks.limits.unique import unique_for

    return bool(task_name) and unique_for(task_name) is not None


@task_postrun.connect(dispatch_uid="limits.unique_release_after_run")
def release_after_run(sender=None, task_id=None, state=None, retval=None, **kwargs):
    from queueworks.limits.unique import unique_claim_release, unique_claim_wait_again

    name = getattr(sender, "name", None)
    if not task_id or not _unique(name):
        return
    try:
        if state in _AGAIN or getattr(retval, "requeue", False):
            unique_claim_wait_again(task_id=task_id, task_name=name)
        elif state == states.IGNORED and getattr(retval, "unique_superseded", False):
            return  # the key is another task's
        else:
            unique_claim_release(task_id=task_id)
    except DatabaseError:
        logger.exception("Could not release the unique claim of %s[%s]; its lease frees it.",
                         name, task_id)


@task_revoked.connect(dispatch_uid="limits.unique_release_revoked")
def release_revoked(sender=None, request=None, **kwargs):
    from queueworks.limits.unique import unique_claim_release

    task_id = getattr(request, "id", None)
    if not task_id or not _unique(getattr(request, "name", None) or getattr(sender, "name", None)):
        return
    try:
        unique_claim_release(task_id=task_id)
    except DatabaseError:
        logger.exception("Could not release the unique claim of revoked %s; its lease frees it.",
                         task_id)


def timed_out_for_good(sender, exception) -> bool:
    """A hard time limit ended the run and its message will not run again."""
    if not isinstance(exception, TimeLimitExceeded) or sender is None:
        return False
    return not (getattr(sender, "acks_late", False)
                and not getattr(sender, "acks_on_failure_or_timeout", True))


@task_failure.connect(dispatch_uid="limits.unique_release_timed_out")
def release_timed_out(sender=None, task_id=None, exception=None, **kwargs):
    from queueworks.limits.unique import unique_claim_release

    if not task_id or not _unique(getattr(sender, "name", None)):
        return
    if not timed_out_for_good(sender, exception):
        return
    fresh_connection()
    try:
        unique_claim_release(task_id=task_id)
    except DatabaseError:
        logger.exception("Could not release the unique claim of %s, killed at its time "
                         "limit; its lease frees it.", task_id)


def fresh_connection() -> None:
    """The worker's main process is long-lived: drop a connection the database
    closed (or past CONN_MAX_AGE) before using it."""
    from django.db import close_old_connections, connection

    if not connection.in_atomic_block:
        close_old_connections()
