"""A host of the inventory boots its programs the way systemd would.

The host's files are rendered from an inventory (render_supervisor --host,
render_systemd --host); supervisord is started from the boot unit's own
ExecStart command line, with only the unit's Environment= and its
EnvironmentFile (no wrapper: no PROJECT_ROOT, RUN_DIR or PATH exported).
Then: the worker program runs as the inventory's unprivileged user and
consumes from the real broker under its host's node name; supervisord's HTTP
interface refuses a request without credentials and answers with them;
supervisorctl works with the rendered file alone.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import xmlrpc.client
from pathlib import Path

import pytest
import requests

from tests.support import rabbit
from tests.support.host_inventory import unprivileged_checkout, unprivileged_venv
from tests.support.requirements import require
from tests.support.live import free_port, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = ("ops-test", "ops-test-password")


def _unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def _env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _ops_controls_the_host_over_http(render_env: dict, port: int) -> None:
    """/ops/'s program selector and control, through the host's HTTP interface
    with the credentials from the environment; a host that does not answer
    is shown as UNREACHABLE, not hidden."""
    from unittest import mock

    from queueworks.ops.programs import ProgramError, program_control, program_states
    from projectname import inventory as declared

    with mock.patch.dict(os.environ, {k: v for k, v in render_env.items()
                                      if k.startswith("HOST_TEST_")}):
        from tests.support.host_inventory import _boot

        inventory = _boot()
    with mock.patch.object(declared, "INVENTORY", inventory), \
            mock.patch.dict(os.environ, {"SUPERVISOR_USERNAME": CREDENTIALS[0],
                                         "SUPERVISOR_PASSWORD": CREDENTIALS[1]}):
        states = program_states()
        assert states["boot-1:main_worker"].state == "RUNNING"
        assert states["boot-1:main_worker"].host == "boot-1"
        assert states["idle-1:heavy_worker"].state == "UNREACHABLE"
        assert "Connection refused" in states["idle-1:heavy_worker"].description
        assert "stop requested" in program_control(name="boot-1:main_worker", action="stop")
        wait_for(lambda: program_states()["boot-1:main_worker"].state == "STOPPED", 150,
                 interval=1, message="main_worker STOPPED through /ops/")
        assert "start requested" in program_control(name="boot-1:main_worker", action="start")
        wait_for(lambda: program_states()["boot-1:main_worker"].state == "RUNNING", 60,
                 interval=1, message="main_worker RUNNING again through /ops/")
        with pytest.raises(ProgramError, match="expected <host>:<program>"):
            program_control(name="main_worker", action="stop")
        with pytest.raises(ProgramError, match="idle-1:heavy_worker: supervisord on idle-1"):
            program_control(name="idle-1:heavy_worker", action="start")
    with mock.patch.object(declared, "INVENTORY", inventory), \
            mock.patch.dict(os.environ, {"SUPERVISOR_PASSWORD": "wrong"}):
        os.environ.setdefault("SUPERVISOR_USERNAME", CREDENTIALS[0])
        assert program_states()["boot-1:main_worker"].state == "UNREACHABLE"


@pytest.fixture
def host_dirs():
    # Short paths (the unix socket), readable by the unprivileged user.
    base = Path(tempfile.mkdtemp(prefix="hb-"))
    base.chmod(0o755)
    run = base / "run"
    (run / "log").mkdir(parents=True)
    nobody = pwd.getpwnam("nobody")
    os.chown(run, nobody.pw_uid, nobody.pw_gid)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def checkout():
    with unprivileged_checkout() as path:
        yield path


@pytest.mark.live
@pytest.mark.timeout(300)
def test_boot_unit_starts_supervisord_without_the_wrapper(host_dirs, checkout, broker_vhost):
    port = free_port()
    venv = unprivileged_venv(host_dirs / "venv", checkout=checkout)
    require(venv is not None, f"a system python{sys.version_info.major}.{sys.version_info.minor} "
                              "for a virtualenv the unprivileged user can run")
    env_file = host_dirs / "env"
    # What /etc/projectname/env holds on a real host (0640 root:projectname).
    env_file.write_text("\n".join([
        f"CELERY_BROKER_URL={rabbit.broker_url(broker_vhost)}",
        "DJANGO_PROFILE=development", "DJANGO_DEBUG=0", "DJANGO_TEST_SUPPORT=1",
        "DJANGO_SECRET_KEY=host-boot-test-secret",
        f"DATABASE_URL=sqlite:///{host_dirs}/run/db.sqlite3",
        f"SUPERVISOR_USERNAME={CREDENTIALS[0]}", f"SUPERVISOR_PASSWORD={CREDENTIALS[1]}",
    ]) + "\n")
    render_env = dict(os.environ, DEPLOY_INVENTORY="tests.support.host_inventory:BOOT",
                      HOST_TEST_RUN_DIR=str(host_dirs / "run"), HOST_TEST_ENV_FILE=str(env_file),
                      HOST_TEST_SUPERVISOR_PORT=str(port), HOST_TEST_VENV=str(venv),
                      HOST_TEST_PROJECT=str(checkout),
                      HOST_TEST_IDLE_PORT=str(free_port()))
    deploy = host_dirs / "deploy"
    for args in (["render_supervisor", "--host", "boot-1", "--deploy-dir", str(deploy)],
                 ["render_systemd", "--host", "boot-1", "--output-dir", str(deploy / "systemd"),
                  "--supervisor-conf", str(deploy / "supervisord.conf")]):
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT,
                              env=render_env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    unit = (deploy / "systemd" / "projectname-supervisord.service").read_text()
    [exec_start] = _unit_values(unit, "ExecStart")
    [unit_env_file] = _unit_values(unit, "EnvironmentFile")
    assert unit_env_file == str(env_file)
    environment = dict(pair.split("=", 1) for line in _unit_values(unit, "Environment")
                       for pair in shlex.split(line))
    environment.update(_env_file_values(env_file))
    assert not {"PROJECT_ROOT", "RUN_DIR", "PATH"} & set(environment)

    supervisord = subprocess.Popen(shlex.split(exec_start), env=environment, cwd="/",
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        server = xmlrpc.client.ServerProxy(
            f"http://{CREDENTIALS[0]}:{CREDENTIALS[1]}@127.0.0.1:{port}/RPC2").supervisor

        log = host_dirs / "run" / "log" / "main_worker.log"

        def running():
            try:
                state = server.getProcessInfo("main_worker")["statename"]
            except (OSError, xmlrpc.client.Error):
                assert supervisord.poll() is None, supervisord.stdout.read().decode()
                return False
            assert state not in ("BACKOFF", "FATAL"), log.read_text()[-3000:]
            return state == "RUNNING"

        wait_for(running, 180, interval=1, message="main_worker RUNNING")
        info = server.getProcessInfo("main_worker")
        assert _uid_of(info["pid"]) == pwd.getpwnam("nobody").pw_uid
        # The HTTP interface never answers without the password.
        anonymous = requests.post(f"http://127.0.0.1:{port}/RPC2", timeout=10,
                                  data=xmlrpc.client.dumps((), "supervisor.getState"))
        assert anonymous.status_code == 401
        wrong = requests.post(f"http://127.0.0.1:{port}/RPC2", timeout=10, auth=("ops-test", "no"),
                              data=xmlrpc.client.dumps((), "supervisor.getState"))
        assert wrong.status_code == 401
        # supervisorctl with the rendered file alone (its unix socket, as root).
        ctl = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c",
                              str(deploy / "supervisord.conf"), "status"],
                             env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
        assert "main_worker" in ctl.stdout and "RUNNING" in ctl.stdout, ctl.stdout + ctl.stderr

        # The worker consumes from the real broker under the host's node name.
        from projectname.celery import app

        def answers():
            replies = app.control.inspect(destination=["main_worker@boot-1"],
                                          timeout=3.0).active_queues() or {}
            return {q["name"] for q in replies.get("main_worker@boot-1", [])}

        assert wait_for(answers, 120, interval=1, message="main_worker@boot-1 consuming") == {
            "main_worker", "celery"}

        _ops_controls_the_host_over_http(render_env, port)
    finally:
        supervisord.send_signal(signal.SIGTERM)
        try:
            supervisord.wait(timeout=150)
        except subprocess.TimeoutExpired:
            supervisord.kill()
            supervisord.wait()
