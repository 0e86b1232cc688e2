"""A throw-away RabbitMQ node: its own name, ports, data directory and config.

The fault scenarios that restart a broker run on one of these, never on the
shared broker on 5672 (bench/faults.py, tests/integration/test_faults*_broker.py).

Like the shared broker, a node has no ``guest``: it is deleted at start, and
the node gets the project's least-privilege user (the permissions of
queueworks/core/broker_access.py on its vhost ``/``) for the system under test
and an administrator for harnesses, both with passwords generated per node.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from queueworks.core.broker_access import APP_USER, TEST_ADMIN_USER, project_permissions


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
    app_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)

    @property
    def app_auth(self) -> tuple[str, str]:
        """The project's least-privilege user: every program of the system under test."""
        return APP_USER, self.app_password

    @property
    def admin_auth(self) -> tuple[str, str]:
        """Full rights on the node's vhost: harnesses and tests that inspect it."""
        return TEST_ADMIN_USER, self.admin_password

    @property
    def url(self) -> str:
        return self._url(self.app_auth)

    @property
    def admin_url(self) -> str:
        return self._url(self.admin_auth)

    def _url(self, auth: tuple[str, str]) -> str:
        user, password = (quote(part, safe="") for part in auth)
        return f"pyamqp://{user}:{password}@127.0.0.1:{self.port}//"

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
        lines = [f"listeners.tcp.1 = 127.0.0.1:{self.port}", "log.console = false"]
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
        try:
            self.ctl("wait", str(base / "rabbit.pid"), "--timeout", str(int(timeout)),
                     timeout=timeout + 10)
            self.ctl("await_startup", timeout=timeout)
            self._create_users()
        except BaseException:
            self.stop()  # a node that is not ready is not left running
            raise

    def _create_users(self) -> None:
        """The project's user and an administrator; ``guest`` deleted."""
        # Passwords go on stdin, never on a command line `ps` could show.
        self.ctl("add_user", TEST_ADMIN_USER, stdin=self.admin_password + "\n")
        self.ctl("set_user_tags", TEST_ADMIN_USER, "administrator")
        self.ctl("set_permissions", "-p", "/", TEST_ADMIN_USER, ".*", ".*", ".*")
        self.ctl("add_user", APP_USER, stdin=self.app_password + "\n")
        permissions = project_permissions()
        self.ctl("set_permissions", "-p", "/", APP_USER,
                 permissions.configure, permissions.write, permissions.read)
        self.ctl("delete_user", "guest")

    def ctl(self, *args: str, timeout: float = 60, stdin: str | None = None) -> str:
        result = subprocess.run([_rabbit_bin("rabbitmqctl"), "-n", self.name, *args],
                                env=self.env(), capture_output=True, text=True, timeout=timeout,
                                input=stdin)
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
