"""migrate_queues reports each step as it happens, also into a pipe (tee, a log
collector, a test reading its output), where Python buffers stdout whole."""

from __future__ import annotations

import os

from queueworks.core.management.commands import migrate_queues
from queueworks.core.queue_migration import QueuePlan, QueueResult


class _Supervisor:
    def names(self) -> set[str]:
        return {"main_worker"}

    def stop(self, programs: list[str]) -> None:
        pass

    def start(self, programs: list[str]) -> None:
        pass


def _available(fd: int) -> str:
    try:
        return os.read(fd, 65536).decode()
    except BlockingIOError:
        return ""


def test_each_step_reaches_a_pipe_while_the_migration_runs(monkeypatch):
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    pipe = os.fdopen(write_fd, "w")  # block-buffered, as stdout is on a pipe
    seen_during_the_step: list[str] = []

    def queue_migrate(*, plan, log, **_):
        log(f"{plan.queue}: paused main_worker")
        seen_during_the_step.append(_available(read_fd))
        return QueueResult(queue=plan.queue, before=0, moved_aside=0, moved_back=0, after=0,
                           seconds=0.0, paused_seconds=0.0)

    monkeypatch.setattr(migrate_queues, "queue_migrate", queue_migrate)
    try:
        migrate_queues.Command(stdout=pipe)._migrate(
            [QueuePlan(queue="celery", differences=[], consumers=["main_worker"])], None, None,
            _Supervisor(), no_resume=True, stop_producers=False, timeout=1)
    finally:
        pipe.close()
        os.close(read_fd)
    assert seen_during_the_step == ["celery: paused main_worker\n"]
