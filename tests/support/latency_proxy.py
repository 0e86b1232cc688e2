"""A TCP proxy that delays every byte by a fixed time in each direction: a
slow link to the broker, for tests that need round trips to take long.

Bytes keep their order and nothing is throttled; only their arrival is late,
as on a long network path.
"""

from __future__ import annotations

import queue
import socket
import threading
import time


class LatencyProxy:
    def __init__(self, target: tuple[str, int], *, delay: float, port: int = 0):
        self.target = target
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        self._closed = False
        threading.Thread(target=self._accept, name="latency-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                chunks: queue.Queue = queue.Queue()
                threading.Thread(target=self._read, args=(source, chunks), daemon=True).start()
                threading.Thread(target=self._write, args=(sink, chunks), daemon=True).start()

    def _read(self, source: socket.socket, chunks: queue.Queue) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            chunks.put((time.monotonic() + self.delay, data))
            if not data:
                return

    @staticmethod
    def _write(sink: socket.socket, chunks: queue.Queue) -> None:
        while True:
            due, data = chunks.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._closed = True
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
