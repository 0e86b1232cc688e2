"""Per-host supervisor configuration (render_supervisor --host/--programs)."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from queueworks.core.supervisor import render_program_files
from projectname.topology import TOPOLOGY


def test_default_render_is_unchanged_by_the_host_option():
    assert render_program_files(TOPOLOGY) == render_program_files(TOPOLOGY, host=None, only=None)
    # The committed deploy/ files still match the default render.
    call_command("render_supervisor", "--check")


def test_host_render_names_workers_after_the_host(tmp_path):
    call_command("render_supervisor", "--host", "web-2", "--programs", "heavy_worker",
                 "--deploy-dir", str(tmp_path))

    assert sorted(p.name for p in (tmp_path / "conf.d").iterdir()) == ["heavy_worker.conf"]
    program = (tmp_path / "conf.d" / "heavy_worker.conf").read_text()
    assert "--hostname=heavy_worker@web-2 " in program
    assert "--queues=heavy " in program
    main = (tmp_path / "supervisord.conf").read_text()
    assert "file=%(ENV_RUN_DIR)s/supervisor.sock" in main
    assert "files = conf.d/*.conf" in main
    # --check agrees with what was written, and notices drift.
    call_command("render_supervisor", "--host", "web-2", "--programs", "heavy_worker",
                 "--deploy-dir", str(tmp_path), "--check")
    with pytest.raises(CommandError):
        call_command("render_supervisor", "--host", "web-3", "--programs", "heavy_worker",
                     "--deploy-dir", str(tmp_path), "--check")


def test_host_render_defaults_to_every_worker_program(tmp_path):
    call_command("render_supervisor", "--host", "h1", "--deploy-dir", str(tmp_path))
    assert sorted(p.stem for p in (tmp_path / "conf.d").iterdir()) == sorted(
        worker.name for worker in TOPOLOGY.workers)


@pytest.mark.parametrize("args, message", [
    (["--host", "h1", "--programs", "nope"], "--programs: unknown program(s) nope"),
    (["--host", "h1", "--programs", ","], "--programs: unknown program(s) (none given)"),
    (["--host", "bad host"], "--host 'bad host' is not a valid host name"),
    (["--programs", "main_worker"], "--programs needs --host"),
])
def test_bad_options_name_the_option(tmp_path, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("render_supervisor", *args, "--deploy-dir", str(tmp_path))


def test_supervisord_for_an_unrendered_host_says_how_to_render_it():
    with pytest.raises(CommandError, match="render_supervisor --host nowhere-1"):
        call_command("supervisord", "--host", "nowhere-1")
