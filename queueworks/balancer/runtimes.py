"""Mean task runtime per worker program, from Celery's task events.

Why task events: every task a worker runs sends ``task-succeeded`` with the
``runtime`` the worker measured around the task alone, whether or not the
task keeps a result (many tasks here ignore theirs, so the results table sees
only some of them, and its times include the result write).  Balanced
programs send task events, or take a lease on them (queueworks/core/events.py);
the balancer renews the lease as Flower does, with ``enable_events``.
Failed tasks carry no runtime and are left out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

logger = logging.getLogger(__name__)


class RuntimeWindow:
    """The last ``size`` runtimes per program (or node) name; thread-safe."""

    def __init__(self, size: int):
        self.size = size
        self._runtimes: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, node: str, runtime: float) -> None:
        if runtime is None or runtime < 0:
            return
        with self._lock:
            self._runtimes.setdefault(node, deque(maxlen=self.size)).append(float(runtime))

    def mean(self, node: str) -> float | None:
        with self._lock:
            values = self._runtimes.get(node)
            return sum(values) / len(values) if values else None


class EventListener(threading.Thread):
    """Feeds a RuntimeWindow from ``task-succeeded`` events; reconnects on errors.

    ``nodes`` maps each node to the key its runtimes count under: its
    program (a program of processes has a node per process)."""

    def __init__(self, app, window: RuntimeWindow, nodes: dict[str, str]):
        super().__init__(name="balancer-events", daemon=True)
        self.app, self.window, self.nodes = app, window, nodes
        self.stopping = threading.Event()
        self.receiver = None

    def stop(self) -> None:
        self.stopping.set()
        if self.receiver is not None:
            self.receiver.should_stop = True

    def on_succeeded(self, event: dict) -> None:
        if event.get("hostname") in self.nodes:
            self.window.add(self.nodes[event["hostname"]], event.get("runtime"))

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.app.connection_for_read() as connection:
                    self.receiver = self.app.events.Receiver(
                        connection, handlers={"task-succeeded": self.on_succeeded})
                    # Checks should_stop at least once a second.
                    self.receiver.capture(limit=None, timeout=None, wakeup=False)
            except Exception:  # noqa: BLE001 - a broker restart must not end the balancer
                logger.exception("Task event listener lost its connection; reconnecting in 2 s.")
                time.sleep(2)
