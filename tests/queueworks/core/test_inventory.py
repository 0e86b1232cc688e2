"""The host inventory: validation, per-host rendering, the commands' --host."""

from __future__ import annotations

import configparser
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from queueworks.core.host_files import (
    boot_unit, render_host_supervisor_files, render_host_unit_files,
)
from queueworks.core.inventory import Host, Inventory, Paths
from projectname import inventory as declared_inventory
from projectname.inventory import THREE_HOSTS
from projectname.topology import TOPOLOGY


@pytest.fixture
def three_hosts(monkeypatch):
    monkeypatch.setattr(declared_inventory, "INVENTORY", THREE_HOSTS)
    return THREE_HOSTS


def test_no_inventory_is_declared_by_default():
    # One host runs everything: today's `make run`.
    assert declared_inventory.INVENTORY is None


def test_the_example_inventory_places_every_program():
    assert THREE_HOSTS.problems(TOPOLOGY) == []
    assert THREE_HOSTS.host_named("web-1").roles == ("web", "beat", "flower", "broker")
    assert THREE_HOSTS.host_named("worker-1").roles == ("workers", "broker")
    assert [h.name for h in THREE_HOSTS.hosts_running("main_worker")] == ["worker-1"]


def test_problems_name_the_stranded_program_and_a_second_beat():
    inventory = Inventory(hosts=(
        Host("a", "10.0.0.1", programs=("web", "beat", "main_worker", "nonsense")),
        Host("b", "10.0.0.2", programs=("beat",)),
    ))
    problems = "\n".join(inventory.problems(TOPOLOGY))
    assert "unknown program 'nonsense'" in problems
    assert "worker program 'heavy_worker' runs on no host" in problems
    assert "beat runs on 2 hosts (a, b)" in problems


@pytest.mark.parametrize("build, message", [
    (lambda: Host("bad name", "10.0.0.1"), "a host name is"),
    (lambda: Inventory(hosts=(Host("a", "x"), Host("a", "y"))), "declared twice"),
    (lambda: Inventory(hosts=(Host("a", "x"),), user="Root User"), "not a valid user name"),
    (lambda: Paths(run_dir="var/lib"), "absolute path"),
])
def test_bad_declarations_are_refused_with_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_broker_url_lists_every_node_starting_elsewhere_per_host():
    url = THREE_HOSTS.broker_url(user="projectname", password="p@ss;word", start_at="worker-1")
    assert url.split(";") == [
        "pyamqp://projectname:p%40ss%3Bword@10.0.0.12:5672/projectname",
        "pyamqp://projectname:p%40ss%3Bword@10.0.0.13:5672/projectname",
        "pyamqp://projectname:p%40ss%3Bword@10.0.0.11:5672/projectname",
    ]


def test_host_supervisor_files_are_self_contained():
    files = render_host_supervisor_files(TOPOLOGY, THREE_HOSTS, "worker-1")
    assert sorted(str(p) for p in files) == [
        "conf.d/bulk_worker_1.conf", "conf.d/main_worker.conf", "supervisord.conf"]
    for path, text in files.items():
        # Only the HTTP interface's credentials come from the environment.
        assert set(re.findall(r"%\(ENV_(\w+)\)s", text)) <= {
            "SUPERVISOR_USERNAME", "SUPERVISOR_PASSWORD"}, path
    parser = configparser.RawConfigParser()
    parser.read_string(files[next(p for p in files if p.name == "main_worker.conf")])
    program = parser["program:main_worker"]
    assert program["user"] == "projectname"
    assert program["command"].startswith("/srv/projectname/.venv/bin/celery -A projectname worker")
    assert "--hostname=main_worker@worker-1 " in program["command"]
    assert program["directory"] == "/srv/projectname"
    assert program["stdout_logfile"] == "/var/lib/projectname/log/main_worker.log"
    assert 'DEPLOY_HOST="worker-1"' in program["environment"]
    main = configparser.RawConfigParser()
    main.read_string(files[next(p for p in files if p.name == "supervisord.conf")])
    assert main["inet_http_server"]["port"] == "10.0.0.12:9001"
    assert main["inet_http_server"]["password"] == "%(ENV_SUPERVISOR_PASSWORD)s"
    assert main["unix_http_server"]["chmod"] == "0700"


def test_boot_unit_starts_the_hosts_supervisord_as_root():
    units = render_host_unit_files(TOPOLOGY, THREE_HOSTS, "worker-2")
    boot = units[boot_unit()]
    assert ("ExecStart=/srv/projectname/.venv/bin/supervisord --nodaemon -c "
            "/srv/projectname/deploy/hosts/worker-2/supervisord.conf") in boot
    assert "EnvironmentFile=/etc/projectname/env" in boot
    assert "\nUser=" not in boot
    # heavy_worker's warm shutdown (1800 s limit + 30) fits in the stop timeout.
    assert "TimeoutStopSec=1860" in boot
    assert sorted(units) == sorted([boot_unit(), "projectname.target",
                                    "projectname-heavy_worker.service",
                                    "projectname-bulk_worker_2.service"])
    assert "Conflicts=projectname-supervisord.service" in units["projectname.target"]
    assert "--hostname=heavy_worker@worker-2 " in units["projectname-heavy_worker.service"]


def test_commands_render_a_declared_host(three_hosts, tmp_path):
    call_command("render_supervisor", "--host", "web-1", "--deploy-dir", str(tmp_path / "web-1"))
    # The alert evaluator comes with beat, undeclared.
    assert sorted(p.name for p in (tmp_path / "web-1" / "conf.d").iterdir()) == [
        "alerts.conf", "beat.conf", "flower.conf", "web.conf"]
    call_command("render_supervisor", "--host", "web-1", "--deploy-dir",
                 str(tmp_path / "web-1"), "--check")
    call_command("render_systemd", "--host", "web-1", "--output-dir", str(tmp_path / "units"))
    assert (tmp_path / "units" / boot_unit()).exists()
    with pytest.raises(CommandError, match="--host 'web-9' is not in the inventory; hosts: "
                                           "web-1, worker-1, worker-2"):
        call_command("render_systemd", "--host", "web-9", "--output-dir", str(tmp_path))
    with pytest.raises(CommandError, match="--host 'nope' is not in the inventory"):
        call_command("render_supervisor", "--host", "nope", "--deploy-dir", str(tmp_path))


def test_render_systemd_host_needs_an_inventory(tmp_path):
    with pytest.raises(CommandError, match="--host needs an inventory"):
        call_command("render_systemd", "--host", "web-1", "--output-dir", str(tmp_path))


def test_systemd_analyze_verifies_every_hosts_units(tmp_path):
    """Every unit of every host of the example inventory, rendered for this
    checkout (so each ExecStart executable exists), passes systemd's verifier."""
    import subprocess
    import sys
    from dataclasses import replace
    from pathlib import Path

    from tests.support.requirements import require_tool

    systemd_analyze = require_tool("systemd-analyze", "systemd")
    env_file = tmp_path / "env"
    env_file.write_text("DJANGO_SECRET_KEY=x\n")
    root = str(Path(__file__).resolve().parents[3])
    inventory = replace(THREE_HOSTS, user="root", paths=Paths(
        project_root=root, run_dir=str(tmp_path / "run"), env_file=str(env_file),
        venv=str(Path(sys.executable).parents[1])))
    for host in inventory.host_names():
        (tmp_path / host).mkdir()
        units = []
        for name, text in render_host_unit_files(TOPOLOGY, inventory, host,
                                                 conf=str(tmp_path / "s.conf")).items():
            (tmp_path / host / name).write_text(text)
            units.append(str(tmp_path / host / name))
        result = subprocess.run([systemd_analyze, "verify", *units],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        problems = [line for line in result.stderr.splitlines() if "projectname" in line]
        assert problems == [], problems


def test_system_check_refuses_a_stranded_program(monkeypatch):
    from django.core import checks

    monkeypatch.setattr(declared_inventory, "INVENTORY", Inventory(hosts=(
        Host("a", "10.0.0.1", programs=("web", "beat", "main_worker")),)))
    errors = [m for m in checks.run_checks() if m.id == "inventory.E001"]
    assert any("worker program 'heavy_worker' runs on no host" in m.msg for m in errors), errors
    monkeypatch.setattr(declared_inventory, "INVENTORY", THREE_HOSTS)
    assert [m for m in checks.run_checks() if m.id == "inventory.E001"] == []


@pytest.mark.parametrize("database_url, inventory, refused", [
    ("sqlite:////tmp/x.sqlite3", "projectname.inventory:THREE_HOSTS", True),
    ("postgres://u:p@127.0.0.1:5432/x", "projectname.inventory:THREE_HOSTS", False),
    ("sqlite:////tmp/x.sqlite3", "", False),
    # Two hosts on this machine's loopback share its disk.
    ("sqlite:////tmp/x.sqlite3", "tests.support.host_inventory:SPLIT", False),
])
def test_sqlite_is_refused_when_the_inventory_spans_machines(database_url, inventory, refused):
    import os
    import subprocess
    import sys

    env = dict(os.environ, DATABASE_URL=database_url, DEPLOY_INVENTORY=inventory)
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True,
                            text=True, timeout=120)
    if refused:
        assert result.returncode != 0
        assert "Refusing to start: the inventory (projectname/inventory.py) declares 3 hosts" \
            in result.stderr
        assert "Traceback" not in result.stderr
    else:
        assert result.returncode == 0, result.stderr


def test_broker_url_comes_from_the_inventory_when_not_set():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update(DEPLOY_INVENTORY="projectname.inventory:THREE_HOSTS", DEPLOY_HOST="worker-2",
               CELERY_BROKER_PASSWORD="s3cret", DATABASE_URL="postgres://u:p@127.0.0.1:5432/x")
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.CELERY_BROKER_URL)")
    # Set but empty: .env's development URL does not fill it in (read_env never overwrites).
    result = subprocess.run([sys.executable, "-c", code], env=dict(
        env, DJANGO_SETTINGS_MODULE="tests.settings", CELERY_BROKER_URL=""),
        capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == (
        "pyamqp://projectname:s3cret@10.0.0.13:5672/projectname;"
        "pyamqp://projectname:s3cret@10.0.0.11:5672/projectname;"
        "pyamqp://projectname:s3cret@10.0.0.12:5672/projectname"), result.stderr


def test_apply_topology_renders_one_hosts_files(three_hosts, tmp_path, settings, monkeypatch):
    settings.BASE_DIR = tmp_path
    # No broker administrator: the command leaves the session vhost's
    # permissions alone (granting would replace the tests' own with the
    # topology's).
    monkeypatch.delenv("RABBITMQ_ADMIN_USER", raising=False)
    monkeypatch.delenv("RABBITMQ_ADMIN_PASSWORD", raising=False)
    call_command("apply_topology", "--host", "worker-2", "--run-dir", str(tmp_path / "run"))
    host = tmp_path / "deploy" / "hosts" / "worker-2"
    assert sorted(p.name for p in (host / "conf.d").iterdir()) == [
        "bulk_worker_2.conf", "heavy_worker.conf"]
    assert (host / "systemd" / boot_unit()).exists()
    with pytest.raises(CommandError, match="--host 'web-9' is not a host of the inventory"):
        call_command("apply_topology", "--host", "web-9")


def test_exactly_one_alert_evaluator_runs_on_the_host_that_runs_beat():
    from dataclasses import replace

    from queueworks.core.host_files import host_programs

    assert [h.name for h in THREE_HOSTS.hosts_running("alerts")] == ["web-1"]
    assert "alerts" in THREE_HOSTS.programs_on("web-1")
    for worker_host in ("worker-1", "worker-2"):
        assert "alerts" not in [p.name for p in host_programs(TOPOLOGY, THREE_HOSTS, worker_host)]
    assert THREE_HOSTS.problems(TOPOLOGY) == []
    # Declaring it elsewhere would make two evaluators, or none beside beat.
    worker = replace(THREE_HOSTS.hosts[1], programs=(*THREE_HOSTS.hosts[1].programs, "alerts"))
    twice = replace(THREE_HOSTS, hosts=(THREE_HOSTS.hosts[0], worker, THREE_HOSTS.hosts[2]))
    assert any("runs on the host that runs 'beat'" in p for p in twice.problems(TOPOLOGY))
