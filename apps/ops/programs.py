"""Start, stop and restart supervisord's programs from the dashboard.

supervisord is reached through apps/core/supervisord_client.py (its XML-RPC
interface on ``$RUN_DIR/supervisor.sock``).
"""

from __future__ import annotations

import threading
import xmlrpc.client
from dataclasses import dataclass

from apps.core.supervisord_client import rpc as _rpc
from apps.core.supervisord_client import socket_path as supervisor_socket_path

from apps.core.program_logs import program_last_error, shows_last_error

ACTIONS = ("start", "stop", "restart")
# Stopping the web server from the page it serves would lock the operator out.
NOT_STOPPABLE = {"web"}


class ProgramError(Exception):
    """An action was refused or supervisord is unreachable; the message says why."""


@dataclass(frozen=True)
class ProgramState:
    name: str
    state: str
    pid: int
    description: str
    # For a program in BACKOFF or FATAL: the last error line of its own log.
    last_error: str = ""


def program_states() -> dict[str, ProgramState]:
    """Name -> state of every program; raises ProgramError when unreachable."""
    rpc = _rpc()
    try:
        infos = rpc.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error) as exc:
        raise ProgramError(f"supervisord is not reachable at {supervisor_socket_path()}: {exc}") from exc
    return {
        info["name"]: ProgramState(
            name=info["name"], state=info["statename"], pid=info["pid"],
            description=info["description"],
            last_error=(program_last_error(rpc, info["name"]) or "")
            if shows_last_error(info) else "")
        for info in infos
    }


def _restart_in_background(name: str) -> None:
    def restart():
        rpc = _rpc()
        try:
            # wait=True: a worker's warm shutdown finishes its running task first.
            rpc.stopProcess(name, True)
        except xmlrpc.client.Fault:
            pass  # already stopped
        rpc.startProcess(name, False)

    threading.Thread(target=restart, name=f"restart-{name}", daemon=True).start()


def program_control(*, name: str, action: str) -> str:
    """Start, stop or restart one program; returns a human-readable outcome.

    Never blocks on a long warm shutdown: stop and restart are requested and
    the dashboard shows the state change on its next refresh.
    """
    if action not in ACTIONS:
        raise ProgramError(f"unknown action '{action}' (expected one of {', '.join(ACTIONS)})")
    states = program_states()
    if name not in states:
        raise ProgramError(f"unknown program '{name}'")
    rpc = _rpc()
    try:
        if action == "start":
            if states[name].state == "RUNNING":
                return f"{name} is already running"
            rpc.startProcess(name, False)
            return f"{name}: start requested"
        if name in NOT_STOPPABLE:
            if action == "restart":
                # gunicorn reloads its workers gracefully on HUP.
                rpc.signalProcess(name, "HUP")
                return f"{name}: graceful reload requested"
            raise ProgramError(f"{name} serves this page; stop it with supervisorctl")
        if action == "stop":
            if states[name].state not in ("RUNNING", "STARTING", "BACKOFF"):
                return f"{name} is not running"
            rpc.stopProcess(name, False)
            return f"{name}: stop requested (a worker finishes its running tasks first)"
        _restart_in_background(name)
        return f"{name}: restart requested"
    except xmlrpc.client.Fault as exc:
        raise ProgramError(f"{name}: {exc.faultString}") from exc
    except OSError as exc:
        raise ProgramError(f"supervisord is not reachable: {exc}") from exc
