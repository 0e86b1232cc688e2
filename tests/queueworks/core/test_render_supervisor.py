"""deploy/ is generated from the topology, and drift is caught."""

import shutil
import subprocess
import sys
from pathlib import Path

from queueworks.core.supervisor import render_program_files
from projectname.topology import TOPOLOGY

ROOT = Path(__file__).resolve().parents[3]


def _render(*args, deploy_dir: Path):
    return subprocess.run(
        [sys.executable, "manage.py", "render_supervisor", *args, f"--deploy-dir={deploy_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_committed_files_match_the_topology():
    result = _render("--check", deploy_dir=ROOT / "deploy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_with_a_diff_on_a_hand_edited_file(tmp_path):
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", deploy)
    conf = deploy / "conf.d" / "main_worker.conf"
    conf.write_text(conf.read_text().replace("--concurrency=2", "--concurrency=8"))

    result = _render("--check", deploy_dir=deploy)

    assert result.returncode != 0
    assert "main_worker.conf" in result.stdout
    assert "-command=" in result.stdout and "--concurrency=8" in result.stdout
    assert "render_supervisor" in result.stderr


def test_render_restores_and_removes_stale_programs(tmp_path):
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", deploy)
    stale = deploy / "conf.d" / "retired_worker.conf"
    stale.write_text((deploy / "conf.d" / "heavy_worker.conf").read_text())
    (deploy / "conf.d" / "main_worker.conf").write_text("edited by hand\n")

    assert _render(deploy_dir=deploy).returncode == 0
    assert not stale.exists()
    assert _render("--check", deploy_dir=deploy).returncode == 0


def test_worker_programs_bind_their_queues_and_allow_a_warm_shutdown():
    files = render_program_files(TOPOLOGY)
    for worker in TOPOLOGY.workers:
        text = files[f"{worker.name}.conf"]
        assert f"--queues={','.join(worker.queues)}" in text
        assert f"--hostname={worker.name}@%%h" in text
        stopwait = int(text.split("stopwaitsecs=")[1].split()[0])
        assert stopwait > TOPOLOGY.longest_time_limit(worker)
        assert "stopsignal=TERM" in text and "killasgroup=true" in text
    assert "numprocs=1" in files["beat.conf"]


def test_recycling_by_task_count_is_rendered_only_when_asked_for():
    from dataclasses import replace

    from queueworks.core.supervisor import worker_command

    main = TOPOLOGY.worker_named("main_worker")
    # The user-facing lane recycles by memory only (see the topology).
    assert "--max-tasks-per-child" not in worker_command(main)
    assert "--max-memory-per-child=200000" in worker_command(main)
    assert "--max-tasks-per-child=50" in worker_command(replace(main, max_tasks_per_child=50))
    # 0 means never: the flag is left out (prefork refuses the value 0).
    assert "--max-tasks-per-child" not in worker_command(replace(main, max_tasks_per_child=0))


def test_a_worker_declared_with_defaults_recycles_by_memory_and_prefetches_one():
    from queueworks.core.supervisor import worker_command
    from projectname.topology import Worker

    command = worker_command(Worker(name="exports_worker", queues=("exports",)))
    # Routes ack late: a second held message would wait behind the running task.
    assert "--prefetch-multiplier=1" in command
    # A recycle by task count stalls one task for seconds; memory catches leaks.
    assert "--max-tasks-per-child" not in command
    assert "--max-memory-per-child=200000" in command
