"""A supervisord running program files rendered from a topology of the caller's
(not the committed deploy/conf.d): the balancer's live tests and benchmark
declare worker programs and a balance of their own."""

from __future__ import annotations

import subprocess
from pathlib import Path

from queueworks.core.supervisor import render_supervisord_conf
from tests.support.live import LiveSystem, PROJECT_ROOT, build_env, free_port, wait_for

START_TIMEOUT = 300


class ProgramsSystem(LiveSystem):
    """``files`` (conf.d file name -> content) under supervisord; ``workers``
    are the programs that must answer with their queues before start() returns."""

    files: dict[str, str]
    workers: list[str]

    def start(self) -> None:
        conf_d = self.run_dir / "conf.d"
        conf_d.mkdir(exist_ok=True)
        for name, text in self.files.items():
            (conf_d / name).write_text(text)
        self.conf.write_text(render_supervisord_conf(run_dir=str(self.run_dir),
                                                     include=str(conf_d / "*.conf")))
        self.process = subprocess.Popen(
            [self.bin("supervisord"), "--nodaemon", "-c", str(self.conf)],
            env=self.env, cwd=PROJECT_ROOT,
            stdout=open(self.run_dir / "supervisord.out", "ab"), stderr=subprocess.STDOUT,
        )
        wait_for(lambda: (self.run_dir / "supervisor.sock").exists(), 20,
                 message="supervisor socket")
        # Not the processes a balancer starts (autostart=false).
        started = [info["name"] for info in self.rpc().getAllConfigInfo() if info["autostart"]]
        self.wait_running(started, timeout=START_TIMEOUT)
        self.wait_workers_ready(self.workers, timeout=START_TIMEOUT)


def programs_system(*, run_dir: Path, vhost: str, broker_url: str, database_url: str,
                    files: dict[str, str], workers: list[str],
                    env: dict[str, str] | None = None) -> ProgramsSystem:
    run_dir.mkdir(parents=True, exist_ok=True)
    web_port, flower_port = free_port(), free_port()
    system = ProgramsSystem(
        run_dir=run_dir, vhost=vhost, broker_url=broker_url, database_url=database_url,
        env=dict(build_env(run_dir=run_dir, broker_url=broker_url, database_url=database_url,
                           web_port=web_port, flower_port=flower_port), **(env or {})),
        web_port=web_port, flower_port=flower_port,
    )
    system.files, system.workers = files, workers
    return system
