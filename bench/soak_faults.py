"""The soak's faults (bench/soak.py): every broker connection of the vhost
closed at an interval, and a gunicorn worker SIGKILLed at another."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading

from bench import common


# -- the faults -----------------------------------------------------------------------------
class Faults:
    """Closes the vhost's broker connections and SIGKILLs gunicorn workers until stopped."""

    def __init__(self, system, *, close_every: float, kill_every: float):
        self.system = system
        self.close_every = close_every
        self.kill_every = kill_every
        self.closed = self.killed = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._closing, daemon=True),
                         threading.Thread(target=self._killing, daemon=True)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _closing(self):
        from tests.support import rabbit

        # Once at once, then every interval: a short round sees the fault too.
        while True:
            with contextlib.suppress(Exception):  # a connection already gone
                for name in rabbit.vhost_connections(self.system.vhost):
                    with contextlib.suppress(Exception):
                        rabbit.close_connection(name, reason="soak: closed every "
                                                             f"{self.close_every}s")
                        self.closed += 1
            if self._stop.wait(self.close_every):
                return

    def _killing(self):
        # The first kill a moment into the round, while requests are in flight.
        while not self._stop.wait(min(self.kill_every, 0.3) if not self.killed
                                  else self.kill_every):
            with contextlib.suppress(Exception):
                master = int(self.system.rpc().getProcessInfo("web")["pid"])
                workers = [p for p in common.tree(master) if p != master]
                if workers:
                    os.kill(random.choice(workers), signal.SIGKILL)
                    self.killed += 1
