"""The README's Quick start and "Adding a task on its own queue" recipe, run as
written in a fresh clone of the repository.

The clone gets the suite's virtualenv by symlink (nothing is reinstalled),
its own RabbitMQ vhost, database file and ports; `make run` starts every
program under supervisord, then the recipe's files are written, its edits made
and its commands run.  The new task must run on its new worker with no step
the README does not name.  (`make test` is the command running this very
suite, so only its presence in the block is checked.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from queueworks.core.supervisord_client import Supervisord
from tests.support import rabbit
from tests.support.doc_blocks import fenced_blocks
from tests.support.live import free_port, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[1]
README = (PROJECT_ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def blocks(text: str) -> list[tuple[str, str]]:
    return [(block.language, block.body) for block in fenced_blocks(text)]


def commands(body: str) -> list[str]:
    return [line.split(" #")[0].strip() for line in body.splitlines() if line.strip()]


def test_the_quick_start_is_two_commands():
    (language, body), = blocks(section("Quick start (fresh Debian machine)"))
    assert language == "sh"
    assert commands(body) == ["make run", "make test"]


def apply_block(clone: Path, language: str, body: str, env: dict[str, str], log) -> str:
    """Do what one fenced block of the recipe says; returns what it printed."""
    if language == "sh":
        output = []
        for command in commands(body):
            log.write(f"$ {command}\n")
            result = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True,
                                    text=True, timeout=600)
            log.write(result.stdout + result.stderr)
            assert result.returncode == 0, f"{command!r} failed:\n{result.stdout}\n{result.stderr}"
            output.append(result.stdout)
        return "".join(output)
    assert language == "python", language
    first, _, code = body.partition("\n")
    target = first.removeprefix("# ")
    if target == "projectname/settings.py: add to INSTALLED_APPS":
        settings = (clone / "projectname" / "settings.py").read_text()
        start = settings.index("INSTALLED_APPS = [")
        end = settings.index("\n]\n", start)
        (clone / "projectname" / "settings.py").write_text(settings[:end] + "\n" + code.rstrip("\n")
                                                           + settings[end:])
    elif target == "projectname/topology.py: at the end":
        with open(clone / "projectname" / "topology.py", "a") as topology:
            topology.write("\n" + code)
    else:
        assert re.fullmatch(r"[\w/]+\.py", target), f"unknown block target {first!r}"
        (clone / target).write_text(body)
    return ""


@pytest.fixture
def clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(clone)], check=True, timeout=120)
    # sys.prefix is the virtualenv itself (resolving sys.executable would
    # follow the venv's interpreter link to the base Python).
    (clone / ".venv").symlink_to(Path(sys.prefix).resolve())
    # The shared venv already holds requirements.txt: make must not reinstall it.
    for name in ("requirements.txt", "requirements-test.txt", "requirements-bench.txt"):
        os.utime(clone / name, (946684800, 946684800))
    return clone


@pytest.mark.live
@pytest.mark.timeout(1200)
def test_make_run_then_the_adding_a_task_recipe_as_written(clone, tmp_path):
    vhost = rabbit.create_vhost("readme")
    env = {key: value for key, value in os.environ.items()
           if key not in ("RUN_DIR", "PROJECT_ROOT", "DATABASE_URL", "PYTEST_CURRENT_TEST")}
    web_port = free_port()
    env.update({
        "CELERY_BROKER_URL": rabbit.broker_url(vhost),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'readme.sqlite3'}",
        "WEB_PORT": str(web_port), "FLOWER_PORT": str(free_port()),
        "FLOWER_BASIC_AUTH": "flower-readme:flower-readme-password",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    })
    log = open(tmp_path / "readme-run.log", "a")
    quick_start = commands(blocks(section("Quick start (fresh Debian machine)"))[0][1])
    make = subprocess.Popen(["bash", "-c", quick_start[0]], cwd=clone, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    supervisord = Supervisord(clone / "run" / "supervisor.sock")
    try:
        def up():
            assert make.poll() is None, (tmp_path / "readme-run.log").read_text()[-3000:]
            if not supervisord.running():
                return False
            states = {name: info["statename"] for name, info in supervisord.process_info().items()}
            return all(state == "RUNNING" for state in states.values()) and states
        programs = wait_for(up, 400, interval=1, message="`make run`: every program RUNNING")
        assert "exports_worker" not in programs
        def web_answers():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{web_port}/health/", timeout=5).status == 200
            except OSError:
                return False
        wait_for(web_answers, 120, interval=1, message="web answering")
        pids_before = {name: info["pid"] for name, info in supervisord.process_info().items()}

        printed = "".join(apply_block(clone, language, body, env, log)
                          for language, body in blocks(section("Adding a task on its own queue")))

        # The new task ran on its new worker.
        assert "'worker': 'exports_worker@" in printed, printed
        # apply_topology started the worker, restarted web, beat and the alerts
        # program (a new queue to watch), and nothing else.
        assert "started (new program): exports_worker" in printed
        restarted = {"web", "beat", "alerts"}
        assert all(f"restarted: {name}" in printed for name in restarted), printed
        after = {name: info["pid"] for name, info in supervisord.process_info().items()}
        untouched = set(pids_before) - restarted
        assert {name: after[name] for name in untouched} == {name: pids_before[name] for name in untouched}
        assert all(after[name] != pids_before[name] for name in restarted)
        assert (clone / "deploy" / "conf.d" / "exports_worker.conf").exists()
        assert (clone / "deploy" / "systemd" / "projectname-exports_worker.service").exists()
    finally:
        try:
            if supervisord.running():
                from queueworks.core.supervisord_client import rpc

                rpc(supervisord.path).shutdown()
            make.wait(timeout=180)
        except Exception:
            if make.poll() is None:
                os.killpg(make.pid, 15)
                make.wait(timeout=60)
        finally:
            log.close()
            rabbit.delete_vhost(vhost)
