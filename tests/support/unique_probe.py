"""Concurrent enqueues of a unique task from several processes, on one database.

    python -m tests.support.unique_probe <DATABASE_URL> <processes> <calls> <keys>

The parent migrates the database, then starts ``processes`` children that
each enqueue ``calls`` calls of ``apps.testing.tasks.unique_job`` over
``keys`` tenants, all at once (a barrier), through the outbox writer
(``recorded_task_accept``).  Publishing is replaced by a count, so what runs
is what would be published.  Prints one JSON line: publishes, distinct ids
returned, records and claims in the database.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys

TASK = "apps.testing.tasks.unique_job"


def _setup(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()


def _child(url: str, index: int, calls: int, keys: int, barrier, results) -> None:
    _setup(url)
    from django.db import connection

    import queueworks.taskapi.recorded as services

    published = []
    services._publish_start = lambda **kw: published.append(kw["task_id"])
    ids = []
    barrier.wait()
    for call in range(calls):
        tenant = f"t{(call + index) % keys}"
        claim = services.recorded_task_accept(
            task_name=TASK, args=[], kwargs={"tenant_id": tenant, "run_id": "probe"},
            queue="main_worker", priority=None, run_at=None)
        ids.append(claim.task_id)
    connection.close()
    results.put({"published": published, "ids": ids})


def main() -> None:
    url, processes, calls, keys = sys.argv[1], *map(int, sys.argv[2:5])
    _setup(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from django.db import connection

    connection.close()
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    children = [context.Process(target=_child, args=(url, i, calls, keys, barrier, results))
                for i in range(processes)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=300) for _ in children]
    for child in children:
        child.join(60)
    from queueworks.limits.models import UniqueClaim, UniqueTally
    from queueworks.taskapi.models import TaskRecord

    published = [task_id for outcome in outcomes for task_id in outcome["published"]]
    returned = {task_id for outcome in outcomes for task_id in outcome["ids"]}
    print(json.dumps({
        "published": len(published), "distinct_published": len(set(published)),
        "distinct_returned": len(returned), "returned_unpublished": len(returned - set(published)),
        "records": TaskRecord.objects.filter(task_name=TASK).count(),
        "claims": UniqueClaim.objects.filter(task_name=TASK).count(),
        "duplicates": UniqueTally.objects.filter(task_name=TASK).values_list(
            "duplicates", flat=True).first(),
        "exit_codes": [child.exitcode for child in children],
    }))


if __name__ == "__main__":
    main()
