"""deploy/systemd/ is rendered from the same topology as deploy/conf.d/, and drift is caught."""

import io
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import CommandError

from queueworks.core.supervisor import programs, render_program_files
from queueworks.core.systemd import Layout, exec_start, render_unit_files
from projectname.topology import TOPOLOGY
from tests.support.requirements import require_tool

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def _render(*args) -> Outcome:
    """`manage.py render_systemd ARGS`, in-process (as the command line reports it)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("render_systemd", *args, stdout=out, stderr=err)
        code = 0
    except CommandError as error:
        err.write(f"CommandError: {error}\n")
        code = 1
    return Outcome(code, out.getvalue(), err.getvalue())


def test_the_command_line_reports_errors_without_a_traceback():
    result = subprocess.run([sys.executable, "manage.py", "render_systemd", "--check",
                             "--project-root=relative/path"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "--project-root" in result.stderr
    assert "Traceback" not in result.stderr


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_committed_units_match_the_topology():
    result = _render("--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_with_a_diff_on_a_hand_edited_unit_and_render_repairs_it(tmp_path):
    out = tmp_path / "systemd"
    shutil.copytree(ROOT / "deploy" / "systemd", out)
    unit = out / "projectname-main_worker.service"
    unit.write_text(unit.read_text().replace("TimeoutStopSec=", "TimeoutStopSec=1"))
    stale = out / "projectname-retired.service"
    stale.write_text((out / "projectname-web.service").read_text())

    result = _render("--check", f"--output-dir={out}")
    assert result.returncode != 0
    assert "projectname-main_worker.service" in result.stdout and "TimeoutStopSec=1" in result.stdout
    assert "projectname-retired.service" in result.stdout
    assert "render_systemd" in result.stderr

    assert _render(f"--output-dir={out}").returncode == 0
    assert not stale.exists()
    assert _render("--check", f"--output-dir={out}").returncode == 0


def test_one_unit_per_program_with_supervisors_command_and_stop_time():
    units = render_unit_files(TOPOLOGY)
    supervisor_files = render_program_files(TOPOLOGY)
    for program in programs(TOPOLOGY):
        d = _directives(units[f"projectname-{program.name}.service"])
        assert d["Restart"] == ["always"]
        assert d["KillSignal"] == ["SIGTERM"] and d["KillMode"] == ["mixed"]
        assert d["TimeoutStopSec"] == [str(program.stopwaitsecs)]
        supervisor_stopwait = supervisor_files[f"{program.name}.conf"].split("stopwaitsecs=")[1].split()[0]
        assert d["TimeoutStopSec"] == [supervisor_stopwait]
        assert d["EnvironmentFile"] == ["/etc/projectname/env"]
        assert d["WantedBy"] == ["projectname.target"]
        # Same arguments as the supervisor program, with an absolute executable.
        executable, _, arguments = d["ExecStart"][0].partition(" ")
        assert executable.startswith("/srv/projectname/.venv/bin/")
        supervisor_arguments = program.command.split(" ", 1)[1] if " " in program.command else ""
        assert arguments == re.sub(r"%\(ENV_(\w+)\)s", r"${\1}", supervisor_arguments)
    for worker in TOPOLOGY.workers:
        start = _directives(units[f"projectname-{worker.name}.service"])["ExecStart"][0]
        assert f"--queues={','.join(worker.queues)}" in start
        assert f"--hostname={worker.name}@%%h" in start  # systemd's % escape, like supervisor's
        assert TOPOLOGY.longest_time_limit(worker) < int(
            _directives(units[f"projectname-{worker.name}.service"])["TimeoutStopSec"][0])
    assert "projectname-beat.service" in units["projectname.target"]


def test_supervisor_variables_become_systemd_variables():
    start = exec_start("celery -A projectname beat --schedule=%(ENV_RUN_DIR)s/s", Layout())
    assert start == "/srv/projectname/.venv/bin/celery -A projectname beat --schedule=${RUN_DIR}/s"


def test_units_pass_systemd_analyze_verify(tmp_path):
    systemd_analyze = require_tool("systemd-analyze", "systemd")
    # Rendered for this checkout, so every ExecStart executable really exists.
    env_file = tmp_path / "env"
    env_file.write_text("DJANGO_SECRET_KEY=x\n")
    out = tmp_path / "units"
    venv_root = Path(sys.executable).parents[2]
    assert _render(f"--output-dir={out}", f"--project-root={venv_root}", "--user=root",
                   f"--env-file={env_file}").returncode == 0
    units = sorted(str(p) for p in out.iterdir())
    result = subprocess.run([systemd_analyze, "verify", *units],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    problems = [line for line in result.stderr.splitlines() if "projectname" in line]
    assert problems == [], problems
