"""The host inventory framework: which programs run on which host.

The declaration (the file a user edits) is ``projectname/inventory.py``; its
``INVENTORY`` is ``None`` unless hosts are declared, meaning one host runs
every program (``make run``).  Derived from a declared inventory:

* per-host supervisor files and systemd units (``queueworks/core/host_files.py``;
  ``render_supervisor --host``, ``render_systemd --host``),
* which host's supervisord ``doctor``, ``liveness`` and ``/ops/`` ask about a
  program (``programs_on``, ``hosts_running``),
* the broker URL list of a cluster (``broker_url``),
* the system checks that refuse an inventory that strands a program or
  shares SQLite between hosts (``queueworks/core/checks_inventory.py``).

A program named in no host runs nowhere: the checks refuse that for workers
(their queues would wait forever) and for web and beat.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import quote

from queueworks.core.topology import Topology

HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]*")
# supervisord's HTTP interface on each host's private address (XML-RPC for
# /ops/ and the operator's supervisorctl), always with a username/password.
SUPERVISOR_PORT = 9001
# The environment variables its credentials come from (never rendered into a file).
SUPERVISOR_USERNAME_VARIABLE = "SUPERVISOR_USERNAME"
SUPERVISOR_PASSWORD_VARIABLE = "SUPERVISOR_PASSWORD"
# Which declared host this process runs on (rendered into every program's
# environment and the boot unit; an operator's shell sets it in the env file).
HOST_VARIABLE = "DEPLOY_HOST"
# Programs that are not Celery workers (queueworks/core/supervisor.py renders them).
SERVICE_PROGRAMS = ("web", "beat", "flower")
# The alert evaluator: like beat, exactly one per deployment, so it runs on
# the host that runs beat without being declared there.
ALERTS_PROGRAM = "alerts"


@dataclass(frozen=True)
class Paths:
    """Where the project lives on every host (docs/deployment.md, "Layout")."""

    # The checkout, with its virtualenv in .venv (owned by root, read-only to the user).
    project_root: str = "/srv/projectname"
    # supervisord's socket and pid, beat's pid, program logs in log/ (owned by the user).
    run_dir: str = "/var/lib/projectname"
    # The settings (same keys as .env.example), mode 0640 root:<user>.
    env_file: str = "/etc/projectname/env"
    # The virtualenv (default: .venv in the checkout).
    venv: str = ""

    def __post_init__(self):
        for name in ("project_root", "run_dir", "env_file", "venv"):
            value = getattr(self, name)
            if value and not value.startswith("/"):
                raise ValueError(f"Paths.{name} must be an absolute path, got {value!r}.")

    @property
    def venv_bin(self) -> str:
        return f"{self.venv or self.project_root + '/.venv'}/bin"

    @property
    def log_dir(self) -> str:
        return f"{self.run_dir}/log"


@dataclass(frozen=True)
class Host:
    """One machine: its name, its private address and the programs it runs."""

    name: str
    # The private network address: supervisord's HTTP interface listens here,
    # and a broker node on this host is reached here.
    address: str
    programs: tuple[str, ...] = ()
    # Runs a node of the RabbitMQ cluster (port Inventory.broker_port).
    broker_node: bool = False
    supervisor_port: int = SUPERVISOR_PORT
    web_port: int = 8000
    flower_port: int = 5555
    # This host's own layout, when it differs from the inventory's.
    paths: Paths | None = None

    def __post_init__(self):
        if not HOST_NAME.fullmatch(self.name):
            raise ValueError(f"Host {self.name!r}: a host name is letters, digits, '_', '.', '-'.")
        if not self.address or any(c.isspace() for c in self.address):
            raise ValueError(f"Host {self.name!r}: address must be a host name or IP address.")

    @property
    def deployed_programs(self) -> tuple[str, ...]:
        """The declared programs, and the alert evaluator beside beat."""
        if "beat" in self.programs and ALERTS_PROGRAM not in self.programs:
            return (*self.programs, ALERTS_PROGRAM)
        return self.programs

    @property
    def roles(self) -> tuple[str, ...]:
        roles = [role for role in SERVICE_PROGRAMS if role in self.programs]
        if any(program not in SERVICE_PROGRAMS for program in self.programs):
            roles.append("workers")
        if self.broker_node:
            roles.append("broker")
        return tuple(roles)

    @property
    def supervisor_url(self) -> str:
        return f"http://{self.address}:{self.supervisor_port}/RPC2"


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...]
    # The unprivileged system user every program runs as (supervisor's user=,
    # systemd's User=); supervisord itself runs as root to switch to it.
    user: str = "projectname"
    paths: Paths = field(default_factory=Paths)
    broker_port: int = 5672
    broker_vhost: str = "projectname"

    def __post_init__(self):
        if not USER_NAME.fullmatch(self.user):
            raise ValueError(f"Inventory user {self.user!r} is not a valid user name.")
        names = [host.name for host in self.hosts]
        if len(set(names)) != len(names):
            raise ValueError(f"Inventory: a host is declared twice ({', '.join(names)}).")
        if not self.hosts:
            raise ValueError("Inventory: declare at least one host (or set INVENTORY = None).")

    # -- lookups -----------------------------------------------------------
    def host_named(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host {name!r} in the inventory (hosts: "
                       f"{', '.join(h.name for h in self.hosts)})")

    def host_names(self) -> list[str]:
        return [host.name for host in self.hosts]

    def paths_of(self, host_name: str) -> Paths:
        return self.host_named(host_name).paths or self.paths

    def programs_on(self, host_name: str) -> tuple[str, ...]:
        return self.host_named(host_name).deployed_programs

    def hosts_running(self, program: str) -> list[Host]:
        return [host for host in self.hosts if program in host.deployed_programs]

    @property
    def spans_machines(self) -> bool:
        """More than one machine: two hosts, not all on this machine's loopback
        (loopback hosts share one disk, as the tests' split inventories do)."""
        import ipaddress

        def loopback(address: str) -> bool:
            try:
                return ipaddress.ip_address(address).is_loopback
            except ValueError:
                return address == "localhost"

        return len(self.hosts) > 1 and not all(loopback(h.address) for h in self.hosts)

    @property
    def broker_hosts(self) -> list[Host]:
        return [host for host in self.hosts if host.broker_node]

    def broker_url(self, *, user: str, password: str, start_at: str | None = None) -> str:
        """The failover list of the cluster's nodes (kombu tries them in order).

        Each host starts the list at another node, so connections spread over
        the cluster instead of all landing on the first node.
        """
        nodes = self.broker_hosts
        if not nodes:
            return ""
        if start_at is not None and start_at in self.host_names():
            offset = self.host_names().index(start_at) % len(nodes)
            nodes = nodes[offset:] + nodes[:offset]
        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
        vhost = quote(self.broker_vhost, safe="")
        return ";".join(f"pyamqp://{credentials}@{node.address}:{self.broker_port}/{vhost}"
                        for node in nodes)

    def problems(self, topology: Topology) -> list[str]:
        """What makes this inventory unusable with ``topology`` (empty: fine)."""
        known = [worker.name for worker in topology.workers] + list(SERVICE_PROGRAMS)
        problems = []
        for host in self.hosts:
            for program in host.programs:
                if program == ALERTS_PROGRAM:
                    problems.append(f"host {host.name!r} declares {ALERTS_PROGRAM!r}: the alert "
                                    "evaluator runs on the host that runs 'beat', undeclared")
                elif program not in known:
                    problems.append(f"host {host.name!r} runs unknown program {program!r} "
                                    f"(programs: {', '.join(known)})")
        for worker in topology.workers:
            if not self.hosts_running(worker.name):
                problems.append(f"worker program {worker.name!r} runs on no host: "
                                f"its queues ({', '.join(worker.queues)}) would wait forever")
        for program in ("web", "beat"):
            if not self.hosts_running(program):
                problems.append(f"no host runs {program!r}")
        if len(beat := self.hosts_running("beat")) > 1:
            problems.append(f"beat runs on {len(beat)} hosts ({', '.join(h.name for h in beat)}): "
                            "exactly one host sends the schedules")
        return problems


def declared() -> Inventory | None:
    """The host project's inventory (QUEUEWORKS_INVENTORY), read when asked
    (tests replace it)."""
    from queueworks import conf

    return conf.inventory()


def current_host_name(environ=os.environ) -> str | None:
    """The declared host this process runs on ($DEPLOY_HOST), or None."""
    return environ.get(HOST_VARIABLE) or None


def supervisor_credentials(environ=os.environ) -> tuple[str, str] | None:
    """(username, password) of the hosts' supervisord HTTP interfaces, or None."""
    username = environ.get(SUPERVISOR_USERNAME_VARIABLE, "")
    password = environ.get(SUPERVISOR_PASSWORD_VARIABLE, "")
    return (username, password) if username and password else None


def inventory_from_environment(default: Inventory | None, environ=os.environ) -> Inventory | None:
    """``default``, or the inventory ``$DEPLOY_INVENTORY`` names (``module:ATTRIBUTE``).

    The variable lets one checkout serve several installations (and the
    multi-host test bed) without editing projectname/inventory.py.
    """
    import importlib

    from django.core.exceptions import ImproperlyConfigured

    dotted = environ.get("DEPLOY_INVENTORY", "").strip()
    if not dotted:
        return default
    module_name, _, attribute = dotted.partition(":")
    try:
        inventory = getattr(importlib.import_module(module_name), attribute or "INVENTORY")
    except (ImportError, AttributeError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"DEPLOY_INVENTORY={dotted!r}: expected module:ATTRIBUTE naming an Inventory ({exc})."
        ) from exc
    if inventory is not None and not isinstance(inventory, Inventory):
        raise ImproperlyConfigured(f"DEPLOY_INVENTORY={dotted!r} is a {type(inventory).__name__}, "
                                   "not an Inventory.")
    return inventory
