"""The dispatch app's services, by subject:

* ``queueworks.dispatch.bulk``: many tasks in one batch (``tasks_enqueue_bulk``);
* ``queueworks.dispatch.enqueue``: one task from a request through the process's
  pooled publisher (``task_enqueue``);
* ``queueworks.dispatch.confirms``: streamed publisher confirms of a batch;
* ``queueworks.dispatch.messages``: Celery protocol 2 messages.

The Task API builds on these (its records and their outbox,
queueworks/taskapi/outbox.py; its bulk start, queueworks/taskapi/bulk.py); this
layer imports nothing of it.

Callers import from here.
"""

from queueworks.dispatch.bulk import (  # noqa: F401
    BulkEnqueueResult,
    tasks_enqueue_bulk,
    tasks_enqueue_bulk_on_commit,
)
from queueworks.dispatch.confirms import BulkEnqueueError, _Confirms, _publish_confirmed  # noqa: F401
from queueworks.dispatch.enqueue import (  # noqa: F401
    EnqueueTiming,
    last_enqueue_timing,
    task_enqueue,
    task_enqueue_on_commit,
)
from queueworks.dispatch.messages import _MessageBuilder, _task_headers  # noqa: F401
