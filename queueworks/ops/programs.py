"""Start, stop and restart supervisord's programs from the dashboard.

supervisord is reached through queueworks/core/supervisord_client.py: this host's
on ``$RUN_DIR/supervisor.sock``; with a host inventory (projectname/inventory.py)
every host's over its HTTP interface on the private network, with
SUPERVISOR_USERNAME/SUPERVISOR_PASSWORD from the environment, and programs
are named ``<host>:<program>``.
"""

from __future__ import annotations

import threading
import xmlrpc.client
from dataclasses import dataclass

from queueworks.core.inventory import declared, supervisor_credentials
from queueworks.core.supervisord_client import Supervisord, SupervisordUnreachable, http_rpc
from queueworks.core.supervisord_client import rpc as _rpc
from queueworks.core.supervisord_client import socket_path as supervisor_socket_path

from queueworks.core.program_logs import shows_last_error

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
    # With an inventory: the host it runs on; ``program`` is the name on that host.
    host: str = ""
    program: str = ""

    def __post_init__(self):
        if not self.program:
            object.__setattr__(self, "program", self.name)


def _host_rpc(host_name: str):
    inventory = declared()
    credentials = supervisor_credentials()
    if credentials is None:
        raise ProgramError("SUPERVISOR_USERNAME and SUPERVISOR_PASSWORD are not set: the hosts' "
                           "supervisord HTTP interfaces cannot be reached")
    return http_rpc(inventory.host_named(host_name).supervisor_url, credentials)


def _split(name: str) -> tuple[str | None, str]:
    """``host:program`` -> (host, program) with an inventory; (None, name) without."""
    inventory = declared()
    if inventory is None:
        return None, name
    host, sep, program = name.partition(":")
    if not sep or host not in inventory.host_names():
        raise ProgramError(f"unknown program '{name}' (expected <host>:<program>, hosts: "
                           f"{', '.join(inventory.host_names())})")
    return host, program


def _rpc_for(name: str):
    host, program = _split(name)
    return (_rpc() if host is None else _host_rpc(host)), program


def program_states() -> dict[str, ProgramState]:
    """Name -> state of every program; raises ProgramError when unreachable.

    A program of processes (``Worker.processes``) is one row, its most
    troubled process's state (``program_info``), every process in the
    description.  With an inventory: every host's programs; a host that does
    not answer shows its declared programs as UNREACHABLE (with the reason)
    instead.
    """
    inventory = declared()
    if inventory is None:
        return _local_states()
    states: dict[str, ProgramState] = {}
    for host in inventory.hosts:
        try:
            client = Supervisord(proxy=_host_rpc(host.name))
            infos = client.process_info()
        except (OSError, xmlrpc.client.Error, SupervisordUnreachable) as exc:
            for program in host.deployed_programs:
                states[f"{host.name}:{program}"] = ProgramState(
                    name=f"{host.name}:{program}", state="UNREACHABLE", pid=0,
                    description=f"supervisord on {host.name} ({host.supervisor_url}): {exc}",
                    host=host.name, program=program)
            continue
        for name, info in infos.items():
            states[f"{host.name}:{name}"] = ProgramState(
                name=f"{host.name}:{name}", state=info["statename"], pid=info["pid"],
                description=info["description"], host=host.name, program=name,
                last_error=(client.last_error(name) or "") if shows_last_error(info) else "")
    return states


def _local_states() -> dict[str, ProgramState]:
    client = Supervisord(proxy=_rpc())
    try:
        infos = client.process_info()
    except (OSError, xmlrpc.client.Error, SupervisordUnreachable) as exc:
        raise ProgramError(f"supervisord is not reachable at {supervisor_socket_path()}: {exc}") from exc
    return {
        name: ProgramState(
            name=name, state=info["statename"], pid=info["pid"], description=info["description"],
            last_error=(client.last_error(name) or "") if shows_last_error(info) else "")
        for name, info in infos.items()
    }


def _client_for(name: str) -> tuple[Supervisord, str]:
    rpc, program = _rpc_for(name)
    return Supervisord(proxy=rpc), program


def _restart_in_background(name: str) -> None:
    def restart():
        client, name_there = _client_for(name)
        # A worker's warm shutdown finishes its running task first; a program
        # of processes comes back with those that start with supervisord.
        client.stop(name_there)
        client.start(name_there, wait=False)

    threading.Thread(target=restart, name=f"restart-{name}", daemon=True).start()


def program_control(*, name: str, action: str) -> str:
    """Start, stop or restart one program; returns a human-readable outcome.

    Never blocks on a long warm shutdown: stop and restart are requested and
    the dashboard shows the state change on its next refresh.
    """
    if action not in ACTIONS:
        raise ProgramError(f"unknown action '{action}' (expected one of {', '.join(ACTIONS)})")
    _split(name)  # with an inventory, a name without its host is refused with the form
    states = program_states()
    if name not in states:
        raise ProgramError(f"unknown program '{name}'")
    if states[name].state == "UNREACHABLE":
        raise ProgramError(f"{name}: {states[name].description}")
    rpc, program = _rpc_for(name)
    client = Supervisord(proxy=rpc)
    try:
        if action == "start":
            if states[name].state == "RUNNING":
                return f"{name} is already running"
            client.start(program, wait=False)
            return f"{name}: start requested"
        if program in NOT_STOPPABLE:
            if action == "restart":
                # gunicorn reloads its workers gracefully on HUP.
                rpc.signalProcess(program, "HUP")
                return f"{name}: graceful reload requested"
            raise ProgramError(f"{name} serves this page; stop it with supervisorctl")
        if action == "stop":
            if states[name].state not in ("RUNNING", "STARTING", "BACKOFF"):
                return f"{name} is not running"
            client.stop(program, wait=False)
            return f"{name}: stop requested (a worker finishes its running tasks first)"
        _restart_in_background(name)
        return f"{name}: restart requested"
    except xmlrpc.client.Fault as exc:
        raise ProgramError(f"{name}: {exc.faultString}") from exc
    except (OSError, SupervisordUnreachable) as exc:
        raise ProgramError(f"supervisord is not reachable: {exc}") from exc
