"""The one client of a running supervisord: its XML-RPC interface over the unix socket.

The socket is ``$RUN_DIR/supervisor.sock`` (``deploy/supervisord.conf`` and
``manage.py supervisord`` put it there; supervisord gives every program the
``RUN_DIR`` it runs from, so the web server finds it too).
"""

from __future__ import annotations

import os
import socket
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from queueworks.core.program_logs import TAIL_BYTES, last_error
from queueworks.conf import project_root


# A program of processes is shown as its most troubled process: a stopped
# process of a running group is one the balancer stopped, not a fault.
_STATE_SEVERITY = ("STOPPED", "RUNNING", "STOPPING", "STARTING", "EXITED", "UNKNOWN",
                   "BACKOFF", "FATAL")
# Processes that run, or are about to: what a program of processes counts.
LIVE_STATES = ("STARTING", "RUNNING", "BACKOFF")


def _severity(info: dict) -> int:
    state = info["statename"]
    return _STATE_SEVERITY.index(state) if state in _STATE_SEVERITY else 0


def full_name(info: dict) -> str:
    """supervisord's name for one process: "<group>:<process>" inside a group of processes."""
    return info["name"] if info.get("group", info["name"]) == info["name"] \
        else f"{info['group']}:{info['name']}"


def program_info(processes: list[dict]) -> dict:
    """One program's info from its processes' (a group's: the state of the most
    troubled one, ``processes`` listing them all)."""
    if len(processes) == 1 and full_name(processes[0]) == processes[0]["name"]:
        return processes[0]
    worst = max(processes, key=_severity)
    running = [info for info in processes if info["statename"] == "RUNNING"]
    first = running[0] if running else worst
    return dict(first, name=first["group"], statename=worst["statename"],
                start=min((info["start"] for info in running), default=first["start"]),
                description=", ".join(f"{info['name']} {info['statename']}"
                                      + (f" pid {info['pid']}" if info["pid"] else "")
                                      for info in processes),
                processes=processes)


class SupervisordUnreachable(Exception):
    """No supervisord answers on the socket; the message names it."""


def run_dir(base_dir: Path | str | None = None) -> Path:
    """``$RUN_DIR`` when set (inside supervisord's programs), else ``<project>/run``."""
    if os.environ.get("RUN_DIR"):
        return Path(os.environ["RUN_DIR"])
    if base_dir is None:
        base_dir = project_root()
    return Path(base_dir) / "run"


def socket_path(base_dir: Path | str | None = None) -> Path:
    return run_dir(base_dir) / "supervisor.sock"


def rpc(path: Path | None = None):
    """supervisord's ``supervisor`` XML-RPC namespace (a new connection per call)."""
    transport = SupervisorTransport(None, None, f"unix://{path or socket_path()}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def http_rpc(url: str, credentials: tuple[str, str], timeout: float = 5.0):
    """Another host's supervisord over its HTTP interface (``inet_http_server``
    on the private network, basic auth), e.g. ``http://10.0.0.12:9001/RPC2``."""
    import http.client
    from urllib.parse import urlsplit

    username, password = credentials
    transport = SupervisorTransport(username, password, url)
    parts = urlsplit(url)
    # SupervisorTransport's connection has no timeout: a dead host must not hang /ops/.
    transport._get_connection = lambda: http.client.HTTPConnection(
        parts.hostname, parts.port or 80, timeout=timeout)
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


@dataclass(frozen=True)
class UpdateResult:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]


class Supervisord:
    """supervisord on this host.  ``timeout`` (seconds) bounds each call; the
    unix-socket transport has no timeout of its own, so the process's default
    socket timeout is set for the call's duration.  ``proxy``: another
    host's supervisord instead (``http_rpc``)."""

    def __init__(self, path: Path | None = None, *, timeout: float | None = None, proxy=None):
        self.path = path or socket_path()
        self.timeout = timeout
        self.proxy = proxy

    def _call(self, method: str, *args):
        previous = socket.getdefaulttimeout()
        if self.timeout is not None:
            socket.setdefaulttimeout(self.timeout)
        try:
            return getattr(self.proxy or rpc(self.path), method)(*args)
        except (OSError, xmlrpc.client.ProtocolError) as exc:
            # Another host's proxy names no socket of this host.
            where = "" if self.proxy is not None else f" at {self.path}"
            raise SupervisordUnreachable(f"supervisord is not reachable{where}: {exc}") from exc
        finally:
            if self.timeout is not None:
                socket.setdefaulttimeout(previous)

    def running(self) -> bool:
        try:
            return self._call("getState")["statename"] == "RUNNING"
        except SupervisordUnreachable:
            return False

    def process_info(self) -> dict[str, dict]:
        """Program (supervisor group) -> its info; a program of processes as
        ``program_info`` sums them up."""
        groups: dict[str, list[dict]] = {}
        for info in self._call("getAllProcessInfo"):
            groups.setdefault(info.get("group", info["name"]), []).append(info)
        return {name: program_info(processes) for name, processes in groups.items()}

    def processes_of(self, program: str) -> list[dict]:
        """The processes of one program, by number ("<program>_<n>"), with
        ``full_name`` for starting and stopping one."""
        processes = [dict(info, full_name=full_name(info))
                     for info in self._call("getAllProcessInfo")
                     if info.get("group", info["name"]) == program]
        return sorted(processes, key=lambda info: int(info["name"].rpartition("_")[2])
                      if info["name"].rpartition("_")[2].isdigit() else 0)

    def _autostarted(self, program: str) -> list[str]:
        """A group's processes that start with supervisord (not the balancer's spares)."""
        return [f"{info['group']}:{info['name']}" for info in self._call("getAllConfigInfo")
                if info["group"] == program and info["autostart"]]

    def last_error(self, name: str) -> str | None:
        """The last error in program ``name``'s log (None: none, or unreadable);
        for a program of processes, in its most troubled process's log."""
        try:
            processes = self.processes_of(name)
            if len(processes) > 1 or (processes and processes[0]["full_name"] != name):
                name = max(processes, key=_severity)["full_name"]
            text, _, _ = self._call("tailProcessStdoutLog", name, 0, TAIL_BYTES)
        except (SupervisordUnreachable, xmlrpc.client.Error):
            return None
        return last_error(text)

    def update(self) -> UpdateResult:
        """``supervisorctl reread`` + ``update``: reread the program files, start new
        programs, restart those whose file changed, stop and drop removed ones."""
        added, changed, removed = self._call("reloadConfig")[0]
        for name in removed:
            self._stop_group(name)
            self._call("removeProcessGroup", name)
        for name in changed:
            self._stop_group(name)
            self._call("removeProcessGroup", name)
            self._call("addProcessGroup", name)
        for name in added:
            self._call("addProcessGroup", name)
        return UpdateResult(tuple(sorted(added)), tuple(sorted(changed)), tuple(sorted(removed)))

    def _stop_group(self, name: str) -> None:
        try:
            # wait=True: a worker's warm shutdown lets its running task finish.
            self._call("stopProcessGroup", name, True)
        except xmlrpc.client.Fault:
            pass  # not running

    def restart(self, name: str) -> None:
        """Warm stop (the running task finishes), then start and wait until RUNNING."""
        self.stop(name)
        self.start(name)

    def stop(self, name: str, *, wait: bool = True) -> None:
        """Warm stop (``wait``: waited for; the running task finishes); a program
        or process that is not running is left as it is.  A program of
        processes stops them all."""
        for process in self._processes(name):
            try:
                self._call("stopProcess", process, wait)
            except xmlrpc.client.Fault as fault:
                if "NOT_RUNNING" not in fault.faultString:
                    raise

    def start(self, name: str, *, wait: bool = True) -> None:
        """Start (``wait``: until RUNNING); a program already running is left as
        it is.  A program of processes starts those that start with
        supervisord; the balancer starts the others."""
        for process in self._processes(name, starting=True):
            try:
                self._call("startProcess", process, wait)
            except xmlrpc.client.Fault as fault:
                if "ALREADY_STARTED" not in fault.faultString:
                    raise

    def _processes(self, name: str, *, starting: bool = False) -> list[str]:
        """``name`` (a program or "<group>:<process>") as supervisord's process names."""
        if ":" in name:
            return [name]
        if starting:
            return self._autostarted(name) or [name]
        return [info["full_name"] for info in self.processes_of(name)] or [name]
