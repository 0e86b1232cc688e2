"""docs/add-to-your-project.md, followed as written, in a project the package
has never seen.

The wheel is built from this working tree and installed into a fresh
virtualenv (one for both walks); ``django-admin startproject`` makes the
project in a temporary directory.  Two walks through the page:

* ``new``: a new project with an app of its own (steps 1-8);
* ``celery``: a plain Celery project with its own ``apps`` package and its
  Celery app in ``mysite/worker.py`` moving over ("Coming from a plain Celery
  project", then steps 6-8).

Each walk writes the page's files, makes its edits and runs its commands,
its own RabbitMQ vhost and users made by the page's ``broker_setup`` step,
then checks that a Celery ``@shared_task`` and a Django ``@task`` ran on the
workers of their queues, that beat sends to an entry's queue and that
queue's worker runs it, and that ``manage.py doctor`` finds nothing wrong.
The one addition to the page: a beat entry every 2 seconds (the office-hours
crontab would wait for the hour).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import queueworks
from queueworks.core.supervisord_client import Supervisord, rpc
from tests.support import rabbit
from tests.support.docs_blocks import Block, blocks, run_commands, run_in_shell, walk, write_file
from tests.support.live import free_port, stop_process_tree, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = (PROJECT_ROOT / "docs" / "add-to-your-project.md").read_text()
WALKS = {
    "new": ("1. Install", "2. Tasks", "3. The topology", "4. Settings", "5. The Celery app",
            "6. URLs", "7. RabbitMQ", "8. Run it"),
    "celery": ("1. Install", "Coming from a plain Celery project", "6. URLs", "7. RabbitMQ",
               "8. Run it"),
}
BEAT_TEST_ENTRY = "adopt-test-every-2-seconds"
# Seconds for five programs to start on a loaded 2-core machine, and for
# beat's first heartbeat (every 15 s) to reach doctor.
START_TIMEOUT = 240


@dataclass(frozen=True)
class Expected:
    celery_app: str           # what the rendered programs pass to `celery -A`
    shared_task_worker: str   # the program running the page's @shared_task
    django_task_worker: str   # ... and its Django @task
    office_hours: str         # the page's office-hours crontab entry
    beat_task: str            # the task the test's 2-second entry sends
    beat_queue: str
    beat_worker: str
    queues: tuple[str, ...]   # the topology's queues, each consumed once the system is up


EXPECTED = {
    "new": Expected("mysite", "quick_worker", "reports_worker", "office-hours-reminders",
                    "orders.tasks.send_reminders", "celery", "quick_worker", ("celery", "reports")),
    "celery": Expected("mysite.worker:app", "quick_worker", "stock_worker", "office-hours-stock",
                       "apps.shop.tasks.sync_stock", "stock", "stock_worker", ("celery", "stock")),
}

# -- the page itself (no broker needed) ---------------------------------------------


def test_every_block_that_does_something_is_in_a_walk():
    walked = {(b.section, b.body) for variant, sections in WALKS.items()
              for b in walk(PAGE, variant, sections)}
    assert {(b.section, b.body) for b in blocks(PAGE) if b.actionable} == walked


def test_a_new_project_needs_few_settings_and_commands():
    (settings,) = [b for b in walk(PAGE, "new", WALKS["new"])
                   if b.options.get("file") == "mysite/settings.py"]
    assert len([line for line in settings.body.splitlines() if line.strip()]) < 15
    commands = [line for b in walk(PAGE, "new", WALKS["new"])
                if b.options.get("run") in ("", "background")
                for line in b.body.splitlines() if line.strip() and not line.startswith("cd ")]
    assert commands == [
        "pip install django-queueworks", "django-admin startproject mysite",
        "python manage.py startapp orders",
        "QUEUEWORKS_PROJECT_NAME=mysite python -m queueworks.core.broker_setup --production",
        "python manage.py migrate", "python manage.py render_supervisor",
        "python manage.py supervisord", "python manage.py doctor",
    ]


def test_the_plain_celery_projects_routes_and_schedule_move_into_its_topology():
    celery_walk = walk(PAGE, "celery", WALKS["celery"])
    (before,) = [b for b in celery_walk if b.options.get("file") == "mysite/settings.py"
                 and "append" in b.options]
    (topology,) = [b for b in celery_walk if b.options.get("file") == "mysite/topology.py"]
    settings = {"INSTALLED_APPS": []}
    exec(before.body.replace('os.environ["CELERY_BROKER_URL"]', '""'), settings)
    declared = {}
    exec(topology.body, declared)
    after = declared["TOPOLOGY"]
    consumed = {queue for worker in after.workers for queue in worker.queues}
    for task, route in settings["CELERY_TASK_ROUTES"].items():
        assert after.route_for(task).queue == route["queue"] and route["queue"] in consumed
    schedules = {entry.name: entry for entry in after.schedules}
    for name, entry in settings["CELERY_BEAT_SCHEDULE"].items():
        moved = schedules[name]
        assert (moved.task, moved.schedule, moved.queue) == (
            entry["task"], entry["schedule"], entry["options"]["queue"])


# -- the page, carried out -------------------------------------------------------------


@pytest.fixture(scope="module")
def adopting_venv(tmp_path_factory):
    """A fresh virtualenv, and the wheel built from this working tree (in a
    copy: a build leaves build/ and *.egg-info beside its sources)."""
    root = tmp_path_factory.mktemp("adopt")
    source = root / "source"
    shutil.copytree(PROJECT_ROOT / "queueworks", source / "queueworks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", source)
    (source / "docs").mkdir()
    shutil.copy(PROJECT_ROOT / "docs" / "add-to-your-project.md", source / "docs")
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(source)], check=True, capture_output=True, timeout=300)
    # The pinned versions the suite runs with, and only this build of the package.
    constraints = root / "constraints.txt"
    constraints.write_text((PROJECT_ROOT / "requirements.txt").read_text()
                           + f"\ndjango-queueworks=={queueworks.__version__}\n")
    venv = root / "venv"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    return venv, dist, constraints


@pytest.fixture
def broker_identity():
    """The names the page's broker_setup step creates; deleted afterwards."""
    name = f"adopt-{uuid.uuid4().hex[:10]}"
    identity = {"vhost": name, "user": name, "password": uuid.uuid4().hex,
                "monitor": f"{name}-monitor", "monitor_password": uuid.uuid4().hex}
    yield identity
    rabbit.delete_vhost(identity["vhost"])
    for user in (identity["user"], identity["monitor"]):
        rabbit.delete_user(user)


def project_env(venv: Path, dist: Path, constraints: Path, identity: dict) -> dict[str, str]:
    """What a user's shell would hold: the virtualenv active, the page's
    variables set, nothing from this test process's Django or Celery."""
    env = {key: value for key, value in os.environ.items()
           if key in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME")
           or key.startswith(("PIP_", "SSL_", "REQUESTS_"))}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        # `pip install django-queueworks` finds this build; its dependencies
        # come from the index at the versions requirements.txt pins.
        "PIP_FIND_LINKS": f"{dist} {os.environ.get('PIP_FIND_LINKS', '')}".strip(),
        "PIP_CONSTRAINT": str(constraints),
        "CELERY_BROKER_URL": (f"pyamqp://{identity['user']}:{identity['password']}"
                              f"@{rabbit.AMQP_HOSTPORT}/{identity['vhost']}"),
        "RABBITMQ_MANAGEMENT_URL": rabbit.MANAGEMENT_URL,
        "RABBITMQ_MANAGEMENT_USER": identity["monitor"],
        "RABBITMQ_MANAGEMENT_PASSWORD": identity["monitor_password"],
        "WEB_PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
        "FLOWER_BASIC_AUTH": f"adopt:{uuid.uuid4().hex}",
    })
    return env


def with_test_schedule(topology: Path, expected: Expected) -> None:
    topology.write_text(topology.read_text() + f"""

# Added by the test, not on the page: beat sends this every 2 seconds.
from datetime import timedelta  # noqa: E402

TOPOLOGY = TOPOLOGY.with_added(schedules=[Schedule(
    name="{BEAT_TEST_ENTRY}", task="{expected.beat_task}", schedule=timedelta(seconds=2),
    queue="{expected.beat_queue}")])
""")


def printed_dicts(output: str) -> list[dict]:
    return [ast.literal_eval(line) for line in output.splitlines() if line.startswith("{")]


INSPECT = """
import json
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

office = settings.CELERY_BEAT_SCHEDULE[{office!r}]
row = PeriodicTask.objects.get(name={office!r})
browser = Client(HTTP_HOST="localhost")
browser.force_login(User.objects.get_or_create(username="adopt-test")[0])
schema = browser.get("/api/schema/?format=json")
print(json.dumps({{
    "schema_paths": schema.json()["paths"] if schema.status_code == 200 else schema.status_code,
    "crontab": [sorted(office["schedule"].minute), sorted(office["schedule"].hour),
                sorted(office["schedule"].day_of_week)],
    "crontab_row": [row.crontab.minute, row.crontab.hour, row.crontab.day_of_week],
    "queues": [office["options"]["queue"], row.queue],
    "beat_runs": list(TaskResult.objects.filter(
        periodic_task_name={entry!r}, status="SUCCESS").values_list("worker", "result")),
}}))
"""


@pytest.mark.live
@pytest.mark.timeout(900)
@pytest.mark.parametrize("variant", ["new", "celery"])
def test_the_page_followed_as_written(variant, adopting_venv, broker_identity, tmp_path):
    venv, dist, constraints = adopting_venv
    expected = EXPECTED[variant]
    env = project_env(venv, dist, constraints, broker_identity)
    admin_env = {**env, "RABBITMQ_ADMIN_USER": rabbit.AUTH[0],
                 "RABBITMQ_ADMIN_PASSWORD": rabbit.AUTH[1]}
    cwd = tmp_path / "work"
    cwd.mkdir()
    log = open(tmp_path / "adopt.log", "a")
    supervisord, after_start = None, []
    try:
        for block in walk(PAGE, variant, WALKS[variant]):
            run = block.options.get("run")
            if run == "shell" or (supervisord is not None and run is not None):
                after_start.append(block)  # needs the running system
            elif "file" in block.options:
                write_file(cwd, block)
                if block.options["file"] == "mysite/topology.py":
                    with_test_schedule(cwd / "mysite" / "topology.py", expected)
            elif run == "background":
                supervisord = subprocess.Popen(
                    ["bash", "-c", block.body], cwd=cwd, env=env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
            else:
                # Only the one command that makes the vhost and users gets the
                # broker administrator's credentials, as the page says.
                cwd, result = run_commands(block, cwd, admin_env if "broker_setup" in block.body
                                           else env, log)
                assert result.returncode == 0, f"{block.body}\n{result.stdout}\n{result.stderr}"
        assert supervisord is not None, "the page never starts supervisord"
        rendered = cwd / "deploy" / "conf.d" / f"{expected.shared_task_worker}.conf"
        assert f"celery -A {expected.celery_app} worker" in rendered.read_text()

        wait_until_running(cwd, supervisord, broker_identity["vhost"], expected.queues)
        printed = ""
        # The page's tasks first: they need only the workers, doctor also
        # needs beat's first heartbeat (15 s after it starts).
        after_start.sort(key=lambda block: block.options["run"] != "shell")
        for block in after_start:
            if block.options["run"] == "shell":
                result = run_in_shell(block, cwd, env, log)
                assert result.returncode == 0, result.stdout + result.stderr
                printed += result.stdout
            else:
                assert "doctor" in block.body, block.body
                doctor = wait_for(lambda: _green(run_commands(block, cwd, env, log)[1]),
                                  START_TIMEOUT, interval=3, message="doctor: all OK")
                assert doctor.returncode == 0

        # (a) the page's @shared_task and Django @task, each on its queue's worker.
        shared, django_task = printed_dicts(printed)
        assert shared["worker"].startswith(f"{expected.shared_task_worker}@"), printed
        assert django_task["worker"].startswith(f"{expected.django_task_worker}@"), printed

        # (b) the office-hours crontab as the page declares it, and beat's
        # sends of the 2-second entry run by the worker of its queue.
        def beat_ran():
            result = run_in_shell_text(INSPECT.format(office=expected.office_hours,
                                                      entry=BEAT_TEST_ENTRY), cwd, env, log)
            report = json.loads(result.stdout.strip().splitlines()[-1])
            return report if report["beat_runs"] else None

        report = wait_for(beat_ran, 60, interval=2, message=f"beat's {BEAT_TEST_ENTRY} run")
        assert report["crontab"] == [[0], list(range(8, 18)), [1, 2, 3, 4, 5]]
        assert report["crontab_row"] == ["0", "8-17", "mon-fri"]
        assert report["queues"] == [expected.beat_queue, expected.beat_queue]
        assert "/api/v1/tasks/" in report["schema_paths"], report["schema_paths"]
        assert all(worker.startswith(f"{expected.beat_worker}@")
                   for worker, _ in report["beat_runs"])

        # The package's URLs, included as the page says, served by the web program.
        web = f"http://127.0.0.1:{env['WEB_PORT']}"
        assert requests.get(f"{web}/health/", timeout=10).status_code == 200
        for signed_in_only in ("/api/v1/queues/", "/api/schema/"):
            assert requests.get(web + signed_in_only, timeout=10).status_code in (401, 403)
    finally:
        if supervisord is not None:
            stop_supervisord(cwd, supervisord)
        log.close()


def _green(result: subprocess.CompletedProcess):
    """doctor's answer once it exits 0 with nothing but OK lines."""
    return result if result.returncode == 0 and "0 FAIL, 0 WARN" in result.stdout else None


def run_in_shell_text(code: str, cwd: Path, env: dict, log) -> subprocess.CompletedProcess:
    result = run_in_shell(Block("test", "python", code), cwd, env, log)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def wait_until_running(cwd: Path, supervisord: subprocess.Popen, vhost: str,
                       queues: tuple[str, ...]) -> None:
    """Every program RUNNING and every queue of the topology consumed."""
    client = Supervisord(cwd / "run" / "supervisor.sock")

    def up():
        assert supervisord.poll() is None, "supervisord exited: see adopt.log"
        if not client.running():
            return False
        states = {name: info["statename"] for name, info in client.process_info().items()}
        failed = [name for name, state in states.items()
                  if state in ("FATAL", "BACKOFF", "EXITED")]
        assert not failed, {name: _log_tail(cwd, name) for name in failed}
        return states and all(state == "RUNNING" for state in states.values())

    def consumed():
        try:
            return all(rabbit.queue_info(vhost, queue).get("consumers") for queue in queues)
        except requests.HTTPError:
            return False  # not declared yet

    wait_for(up, START_TIMEOUT, interval=1, message="every program RUNNING")
    wait_for(consumed, START_TIMEOUT, interval=1, message=f"consumers on {', '.join(queues)}")


def _log_tail(cwd: Path, program: str) -> str:
    path = cwd / "run" / "log" / f"{program}.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def stop_supervisord(cwd: Path, supervisord: subprocess.Popen) -> None:
    """supervisord stops its programs; whatever is left after a minute is
    killed, supervisord and every process under it."""
    if supervisord.poll() is None:
        try:
            rpc(cwd / "run" / "supervisor.sock").shutdown()
        except Exception:  # noqa: BLE001  (not answering: signal it instead)
            supervisord.send_signal(signal.SIGTERM)
    stop_process_tree(supervisord, timeout=60)
