"""Records Django's task signals as the workers send them, one line each in
``$RUN_DIR/django-task-signals.log`` ("started|finished <id> <status>"): the
Django task backend's live tests read it."""

from __future__ import annotations

import os
from pathlib import Path

LOG_NAME = "django-task-signals.log"


def _record(event: str, task_result) -> None:
    run_dir = os.environ.get("RUN_DIR")
    if not run_dir:
        return
    with open(Path(run_dir) / LOG_NAME, "a", encoding="ascii") as log:
        log.write(f"{event} {task_result.id} {task_result.status}\n")


def on_task_started(sender, task_result, **kwargs):
    _record("started", task_result)


def on_task_finished(sender, task_result, **kwargs):
    _record("finished", task_result)
