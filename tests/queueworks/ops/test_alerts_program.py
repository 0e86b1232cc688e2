"""The alert evaluator is a program of its own, not a task on a queue."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from projectname.topology import TOPOLOGY
from queueworks.core.builtin import builtin_routes, builtin_schedules
from queueworks.core.supervisor import programs


def test_no_queue_carries_the_alerts_and_one_program_evaluates_them():
    for routes in (TOPOLOGY.routes, builtin_routes(queue="q")):
        assert not any("alert" in route.task for route in routes)
    for schedules in (TOPOLOGY.schedules, builtin_schedules(queue="q")):
        assert not any("alert" in entry.task or "alert" in entry.name for entry in schedules)
    alerts = [program for program in programs(TOPOLOGY) if program.name == "alerts"]
    assert [program.command for program in alerts] == ["python manage.py ops_alerts --loop"]


@pytest.mark.parametrize("arguments, message", [
    (["--every", "5"], "--every needs --loop"),
    (["--loop", "--every", "0"], "--every must be a positive number of seconds"),
])
def test_the_command_names_a_wrong_option(arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("ops_alerts", *arguments)


def test_the_loop_outlives_a_failing_round_and_stops_on_sigterm(tmp_path):
    """A database without tables makes every round fail: the program logs it,
    keeps its interval, and stops at once on supervisord's TERM."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.support.live import PROJECT_ROOT, wait_for

    log = tmp_path / "alerts.log"
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}",
               DJANGO_SETTINGS_MODULE="projectname.settings",
               CELERY_BROKER_URL="pyamqp://nobody:nothing@127.0.0.1:1/none",
               RABBITMQ_MANAGEMENT_URL="http://127.0.0.1:1", RUN_DIR=str(tmp_path))
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "manage.py", "ops_alerts", "--loop",
                                    "--every", "0.2"], cwd=PROJECT_ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: log.read_text().count("alerts: evaluation failed") >= 3, 60,
                     message="three failed rounds")
            assert process.poll() is None
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert process.wait(timeout=10) == 0
            assert time.monotonic() - started < 5
        finally:
            if process.poll() is None:
                process.kill()
