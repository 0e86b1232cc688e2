"""No fork while a background thread of this process is writing to the database.

SQLite keeps a process's locks on a database file in memory shared by all of
that process's connections.  A process forked while another of its threads is
inside a write transaction inherits "this process holds the write lock",
held by a thread the child does not have, so never released: every write of
the child waits the whole busy timeout and fails with ``database is locked``,
while every other process writes at once.  A prefork worker's main process
forks pool processes (at start, and to replace one that exited: memory
limit, max tasks, a lost process) and runs background writers of its own
(the metrics recorder's flush, the outbox confirm marker); a pool process
forked in the middle of one of their transactions could store no result.

``background_writes()`` wraps a background thread's database work; a fork
waits until none is in progress (``os.register_at_fork``), which covers
billiard's fork as much as any other.  Writes are short (one flush, one
batch of marks), so a fork waits milliseconds.  PostgreSQL keeps its locks in
the server, per connection, and needs none of this, but a guarded write costs
one uncontended lock, so the guard is not made vendor-specific.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

_lock = threading.RLock()


@contextmanager
def background_writes():
    """Hold off forks of this process while the block writes to the database."""
    with _lock:
        yield


def _before_fork() -> None:
    _lock.acquire()


def _after_fork_in_parent() -> None:
    _lock.release()


def _after_fork_in_child() -> None:
    # The child has only the forking thread; a fresh lock, not one held by it.
    global _lock
    _lock = threading.RLock()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
