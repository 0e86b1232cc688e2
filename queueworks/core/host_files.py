"""Per-host deploy files rendered from the inventory (queueworks/core/inventory.py).

For each declared host, in ``deploy/hosts/<host>/``:

* ``supervisord.conf`` and ``conf.d/*.conf``: only that host's programs, with
  absolute paths (the venv's executables, the run and log directories), each
  program as the inventory's unprivileged ``user``, and supervisord's HTTP
  interface on the host's private address with a username and password from
  its environment.  No wrapper is needed: ``supervisord -c`` starts it as is.
* ``systemd/projectname-supervisord.service``: the boot unit starting that
  supervisord (root, so it can switch programs to the user).
* ``systemd/projectname-<program>.service`` + ``projectname.target``: the same
  programs as plain systemd units, the alternative to supervisor.  The target
  and the boot unit conflict, so a host never runs its programs twice.

``python manage.py render_supervisor --host <host>`` and
``render_systemd --host <host>`` write them; the default render (no
inventory, ``deploy/supervisord.conf``) is untouched by any of this.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath

from queueworks.core import systemd
from queueworks.core.inventory import (
    HOST_VARIABLE, SUPERVISOR_PASSWORD_VARIABLE, SUPERVISOR_USERNAME_VARIABLE, Host, Inventory,
)
from queueworks.core.supervisor import HEADER, Program, programs, render_program
from queueworks.core.topology import Topology

def boot_unit() -> str:
    """The boot unit that starts a host's supervisord."""
    return f"{systemd.unit_prefix()}-supervisord.service"
# Seconds systemd lets supervisord stop its programs beyond their own longest
# warm shutdown (supervisord stops them one priority group after another).
BOOT_STOP_MARGIN = 30


def resolve(text: str, inventory: Inventory, host: Host) -> str:
    """The wrapper's %(ENV_...)s placeholders, replaced by this host's values."""
    paths = inventory.paths_of(host.name)
    for name, value in (("PROJECT_ROOT", paths.project_root), ("RUN_DIR", paths.run_dir),
                        ("WEB_PORT", str(host.web_port)), ("FLOWER_PORT", str(host.flower_port))):
        text = text.replace(f"%(ENV_{name})s", value)
    return text


def host_programs(topology: Topology, inventory: Inventory, host_name: str) -> list[Program]:
    """The programs ``host_name`` runs, self-contained (absolute executables and paths)."""
    host = inventory.host_named(host_name)
    result = []
    for program in programs(topology, host.name):
        if program.name not in host.deployed_programs:
            continue
        executable, _, arguments = program.command.partition(" ")
        if executable in systemd.VENV_EXECUTABLES:
            executable = f"{inventory.paths_of(host.name).venv_bin}/{executable}"
        result.append(replace(
            program,
            command=resolve(f"{executable} {arguments}", inventory, host),
            environment=tuple((name, resolve(value, inventory, host))
                              for name, value in program.environment),
        ))
    return result


def host_environment(inventory: Inventory, host: Host) -> tuple[tuple[str, str], ...]:
    """What the wrapper would have exported, fixed per host (and which host it is)."""
    paths = inventory.paths_of(host.name)
    return (
        (HOST_VARIABLE, host.name),
        ("PROJECT_ROOT", paths.project_root),
        ("RUN_DIR", paths.run_dir),
        ("WEB_PORT", str(host.web_port)),
        ("FLOWER_PORT", str(host.flower_port)),
        ("PATH", f"{paths.venv_bin}:/usr/local/bin:/usr/bin:/bin"),
    )


def render_host_supervisord_conf(inventory: Inventory, host: Host) -> str:
    paths = inventory.paths_of(host.name)
    return f"""{HEADER}; Host {host.name} ({', '.join(host.roles) or 'no programs'}) of the inventory.
; Started by systemd/{boot_unit()} (as root, so each program runs as user={inventory.user}).

[unix_http_server]
file={paths.run_dir}/supervisor.sock
; root and the project's user only (doctor, liveness and apply_topology run as that user).
chmod=0700
chown={inventory.user}

[inet_http_server]
; /ops/ on the web host controls this host's programs here (private network).
; Credentials from the environment (the boot unit's EnvironmentFile): without
; them supervisord refuses to start, so this port is never open without a password.
port={host.address}:{host.supervisor_port}
username=%(ENV_{SUPERVISOR_USERNAME_VARIABLE})s
password=%(ENV_{SUPERVISOR_PASSWORD_VARIABLE})s

[supervisord]
logfile={paths.log_dir}/supervisord.log
pidfile={paths.run_dir}/supervisord.pid
childlogdir={paths.log_dir}
directory={paths.project_root}
identifier={systemd.unit_prefix()}-{host.name}
logfile_maxbytes=50MB
logfile_backups=5
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{paths.run_dir}/supervisor.sock

[include]
; Relative to this file.
files = conf.d/*.conf
"""


def render_host_supervisor_files(topology: Topology, inventory: Inventory,
                                 host_name: str) -> dict[PurePosixPath, str]:
    """Path relative to the host's deploy directory -> content."""
    host = inventory.host_named(host_name)
    paths = inventory.paths_of(host_name)
    files = {PurePosixPath("supervisord.conf"): render_host_supervisord_conf(inventory, host)}
    for program in host_programs(topology, inventory, host_name):
        files[PurePosixPath("conf.d") / f"{program.name}.conf"] = render_program(
            program, directory=paths.project_root, log_dir=paths.log_dir,
            user=inventory.user, environment=host_environment(inventory, host))
    return files


def supervisord_conf_path(inventory: Inventory, host_name: str) -> str:
    """Where the host's supervisord.conf is on the host (inside the checkout)."""
    return f"{inventory.paths_of(host_name).project_root}/deploy/hosts/{host_name}/supervisord.conf"


def render_boot_unit(topology: Topology, inventory: Inventory, host_name: str,
                     conf: str | None = None) -> str:
    host = inventory.host_named(host_name)
    paths = inventory.paths_of(host_name)
    conf = conf or supervisord_conf_path(inventory, host_name)
    stop = max((p.stopwaitsecs for p in host_programs(topology, inventory, host_name)), default=0)
    return f"""{systemd.HEADER}
[Unit]
Description={systemd.unit_prefix()} supervisord on {host.name}: {', '.join(host.deployed_programs) or 'no programs'}
Documentation=file://{paths.project_root}/docs/deployment.md
After=network-online.target rabbitmq-server.service postgresql.service
Wants=network-online.target
# The per-program units are the alternative: never both.
Conflicts={systemd.target_name()}

[Service]
Type=simple
# Root: supervisord switches each program to user={inventory.user} itself.
Environment={HOST_VARIABLE}={host.name}
# The settings and {SUPERVISOR_USERNAME_VARIABLE}/{SUPERVISOR_PASSWORD_VARIABLE}; the programs inherit them.
EnvironmentFile={paths.env_file}
ExecStart={paths.venv_bin}/supervisord --nodaemon -c {conf}
ExecReload={paths.venv_bin}/supervisorctl -c {conf} update
# supervisord stops every program with its own warm shutdown (the longest
# here is {stop} s); systemd waits for that, then kills what is left.
KillMode=mixed
TimeoutStopSec={stop + BOOT_STOP_MARGIN}
Restart=on-failure
RestartSec={systemd.RESTART_SECONDS}

[Install]
WantedBy=multi-user.target
"""


def render_host_unit_files(topology: Topology, inventory: Inventory, host_name: str,
                           conf: str | None = None) -> dict[str, str]:
    """File name in the host's systemd/ directory -> content."""
    host = inventory.host_named(host_name)
    paths = inventory.paths_of(host_name)
    layout = systemd.Layout(project_root=paths.project_root, user=inventory.user,
                            env_file=paths.env_file, run_root=paths.run_dir)
    # The units' own defaults already hold the default ports.
    host_defaults = ((HOST_VARIABLE, host.name),
                     *((("WEB_PORT", str(host.web_port)),) if host.web_port != 8000 else ()),
                     *((("FLOWER_PORT", str(host.flower_port)),) if host.flower_port != 5555 else ()))
    files = {boot_unit(): render_boot_unit(topology, inventory, host_name, conf)}
    chosen = host_programs(topology, inventory, host_name)
    for program in chosen:
        # systemd units take the raw command (exec_start makes it absolute).
        files[systemd.unit_name(program)] = systemd.render_service(
            program, layout, environment_defaults=host_defaults)
    units = " ".join(unit for program in chosen for unit in systemd.started_units(program))
    files[systemd.target_name()] = f"""{systemd.HEADER}
[Unit]
Description={systemd.unit_prefix()} on {host.name} without supervisor: {', '.join(host.deployed_programs)}
Wants={units}
Conflicts={boot_unit()}

[Install]
WantedBy=multi-user.target
"""
    return files
