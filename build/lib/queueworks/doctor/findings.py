"""What a doctor check returns (Finding), what it reads (Context), and the
helpers every check module shares."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit


OK, WARN, FAIL = "OK", "WARN", "FAIL"
SUPERVISORCTL = ".venv/bin/supervisorctl -c deploy/supervisord.conf"
# Defaults from settings.py / .env.example that must not reach production.
DEFAULT_SECRET_KEYS = {"dev-only-insecure-secret-key"}
DEFAULT_FLOWER_AUTH = {"flower:change-me"}
# Programs that are not workers: their absence is a warning, not a failure.
SUPPORT_PROGRAMS = ("web", "flower")


@dataclass
class Finding:
    check: str
    status: str
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.check:<22} {self.message}"
        return f"{text}  -> fix: {self.fix}" if self.fix and self.status != OK else text

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    broker_url: str
    run_dir: Path
    timeout: float
    debug: bool
    broker_ok: bool = False
    supervisor_states: dict | None = None  # name -> process info, None: unreachable
    # Queue name -> differences between its live and declared arguments.
    conflicts: dict = field(default_factory=dict)
    # The declared inventory (queueworks/core/inventory.py) and the host doctor runs
    # on: programs declared on other hosts are judged there, not here.
    inventory: object | None = None
    host: str | None = None

    def runs_here(self, program: str) -> bool:
        if self.inventory is None or self.host is None:
            return True
        return program in self.inventory.programs_on(self.host)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def _broker_identity(url: str) -> tuple[str, str, str]:
    """(user, host:port, vhost-or-db) as the URL names them."""
    parts = urlsplit(url)
    is_redis = parts.scheme.startswith("redis")
    default_port = 6379 if is_redis else 5672
    user = unquote(parts.username or ("" if is_redis else "guest"))
    host = f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = (f"db {path or 0}" if is_redis else f"vhost '{unquote(path) or '/'}'")
    return user, host, vhost


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text


