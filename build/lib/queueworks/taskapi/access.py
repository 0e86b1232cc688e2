"""Who may see and act on which task: the Task API's permissions in one place.

Staff status grants nothing here; every right is a Django permission, held
directly or through a group (the "task viewers" and "task operators" groups
are created by migrations):

* ``taskapi.view_all_tasks``: read every task.  Without it a user reads only
  the tasks they started (``TaskRecord.requested_by``).
* ``taskapi.operate_tasks``: start, cancel and re-run the tasks they can read.
* ``taskapi.cancel_system_tasks``: also cancel tasks nobody started through
  the API (beat's schedules, tasks other tasks started).

``user=None`` in a service call means trusted code (a command, a task), not
a request: no permission applies.
"""

from __future__ import annotations

from django.db.models import Q

VIEW_ALL_TASKS = "taskapi.view_all_tasks"
OPERATE_TASKS = "taskapi.operate_tasks"
CANCEL_SYSTEM_TASKS = "taskapi.cancel_system_tasks"
VIEWERS_GROUP = "task viewers"
OPERATORS_GROUP = "task operators"


def can_view_all(user) -> bool:
    return user is None or bool(user.is_authenticated and user.has_perm(VIEW_ALL_TASKS))


def visible_results(user) -> Q | None:
    """A filter on ``TaskResult`` annotated with ``record_requester``; None: everything."""
    if can_view_all(user):
        return None
    return Q(record_requester=user.pk)


def may_see(user, record) -> bool:
    """``record``: the task's ``TaskRecord`` (None for a task started outside the API)."""
    if can_view_all(user):
        return True
    return record is not None and record.requested_by_id == user.pk


def is_system_task(record) -> bool:
    """Not started by a user through the API: beat's, or another task's."""
    return record is None or record.requested_by_id is None


def may_cancel(user, record) -> bool:
    if user is None:
        return True
    if not user.has_perm(OPERATE_TASKS):
        return False
    return not is_system_task(record) or user.has_perm(CANCEL_SYSTEM_TASKS)
