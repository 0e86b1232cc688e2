"""The live test system's stop leaves no program running (tests/support/live.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.common import tree
from tests.support.live import LiveSystem, wait_for

STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "time.sleep(600)")


def test_a_program_that_will_not_stop_is_killed_with_supervisord(tmp_path):
    """supervisord waits up to a program's stopwaitsecs (a worker's is its
    longest time limit); past the fixture's own timeout every process under
    supervisord goes, not supervisord alone."""
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        "[supervisord]\n"
        f"logfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        "[program:stubborn]\n"
        f'command={sys.executable} -c "{STUBBORN}"\n'
        "stopwaitsecs=300\nstartsecs=0\nautostart=true\n")
    system = LiveSystem(run_dir=tmp_path, vhost="-", broker_url="-", database_url="-",
                        env={}, web_port=0, flower_port=0)
    system.process = subprocess.Popen(
        [LiveSystem.bin("supervisord"), "--nodaemon", "-c", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    supervisord = system.process.pid
    program = wait_for(lambda: next(iter(tree(supervisord)[1:]), None), 30,
                       message="the stubborn program running")

    started = time.monotonic()
    system.stop(timeout=2)

    assert time.monotonic() - started < 30
    assert system.process.poll() is not None

    def gone(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().split(") ")[1].startswith("Z")
        except FileNotFoundError:
            return True

    wait_for(lambda: gone(program), 10, message=f"program {program} gone")
    assert gone(program), f"program {program} still running: {os.popen(f'ps -p {program} -o cmd=').read()}"
