"""A throw-away RabbitMQ node: its own name, ports, data directory and config.

The fault scenarios that restart a broker run on one of these, never on the
shared broker on 5672 (bench/faults.py, tests/integration/test_faults*_broker.py).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def free_low_port() -> int:
    """A free TCP port below the ephemeral range (RabbitMQ fails to bind some above it)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def _rabbit_bin(name: str) -> str:
    # The Debian wrappers in /usr/sbin switch to the rabbitmq user; the real
    # scripts run as the caller with our own HOME (cookie) and directories.
    candidate = Path("/usr/lib/rabbitmq/bin") / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


@dataclass
class RabbitNode:
    """A private RabbitMQ node (own name, ports, data and config), as root or any user."""

    base_dir: Path
    consumer_timeout_ms: int | None = None
    channel_tick_ms: int | None = None
    name: str = field(default_factory=lambda: f"faults-{uuid.uuid4().hex[:8]}@localhost")
    port: int = field(default_factory=free_low_port)
    dist_port: int = field(default_factory=free_low_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"pyamqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        base = self.base_dir
        env = dict(os.environ)
        env.update({
            "HOME": str(base / "home"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        })
        return env

    def start(self, timeout: float = 90) -> None:
        base = self.base_dir
        for sub in ("home", "mnesia", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        lines = [f"listeners.tcp.1 = 127.0.0.1:{self.port}", "loopback_users = none",
                 "log.console = false"]
        if self.consumer_timeout_ms:
            lines.append(f"consumer_timeout = {self.consumer_timeout_ms}")
        (base / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        advanced = []
        if self.channel_tick_ms:
            # How often a channel checks consumer_timeout (default 60 s).
            advanced.append(f"{{channel_tick_interval, {self.channel_tick_ms}}}")
        (base / "advanced.config").write_text(f"[{{rabbit, [{', '.join(advanced)}]}}].\n")
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")
        self.process = subprocess.Popen(
            [_rabbit_bin("rabbitmq-server")], env=self.env(), cwd=base,
            stdout=open(base / "server.out", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ctl("wait", str(base / "rabbit.pid"), "--timeout", str(int(timeout)), timeout=timeout + 10)
        self.ctl("await_startup", timeout=timeout)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run([_rabbit_bin("rabbitmqctl"), "-n", self.name, *args],
                                env=self.env(), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stdout}{result.stderr}"
                               f"\n{self.log_tail()}")
        return result.stdout

    def log_tail(self, lines: int = 20) -> str:
        path = self.base_dir / "server.out"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def restart_app(self, down_seconds: float = 3.0) -> None:
        """rabbitmqctl stop_app / start_app: every connection drops, queues survive."""
        self.ctl("stop_app")
        time.sleep(down_seconds)
        self.ctl("start_app")
        self.ctl("await_startup")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.ctl("stop", timeout=60)
        except Exception:  # noqa: BLE001 - fall back to our own process group
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
