"""Records Django's task signals as the workers send them, one line each in
the file ``$DJANGO_TASK_SIGNALS_LOG`` names ("started|finished <id> <status>"):
the live test system sets it and the Django task backend's live tests read
it; elsewhere (the benchmarks) nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

LOG_NAME = "django-task-signals.log"
VARIABLE = "DJANGO_TASK_SIGNALS_LOG"


def _record(event: str, task_result) -> None:
    path = os.environ.get(VARIABLE)
    if not path:
        return
    with open(Path(path), "a", encoding="ascii") as log:
        log.write(f"{event} {task_result.id} {task_result.status}\n")


def on_task_started(sender, task_result, **kwargs):
    _record("started", task_result)


def on_task_finished(sender, task_result, **kwargs):
    _record("finished", task_result)
