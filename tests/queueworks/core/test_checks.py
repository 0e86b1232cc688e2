"""The topology system check names every kind of stranding mistake."""

import dataclasses
import subprocess
import sys
from pathlib import Path

from queueworks.core.checks import check_topology, project_task_names
from projectname.topology import TOPOLOGY, Queue, Route, Schedule, Worker

KNOWN = project_task_names()
PROBE = "queueworks.core.tasks.probe"


def _ids_and_messages(topology):
    errors = check_topology(topology, KNOWN)
    return [e.id for e in errors], " | ".join(e.msg for e in errors)


def test_the_project_topology_is_clean():
    assert check_topology(TOPOLOGY, KNOWN) == []


def test_route_to_undeclared_queue():
    broken = dataclasses.replace(TOPOLOGY, routes=TOPOLOGY.routes + (Route(PROBE, "nowhere"),))
    ids, text = _ids_and_messages(broken)
    assert "topology.E004" in ids and "'nowhere'" in text and PROBE in text


def test_queue_without_consumer():
    broken = dataclasses.replace(TOPOLOGY, queues=TOPOLOGY.queues + (Queue("orphan", "x"),))
    ids, text = _ids_and_messages(broken)
    assert ids == ["topology.E003"] and "'orphan'" in text


def test_worker_consuming_undeclared_queue():
    worker = Worker(name="ghost", queues=("ghost_queue",))
    broken = dataclasses.replace(TOPOLOGY, workers=TOPOLOGY.workers + (worker,))
    ids, text = _ids_and_messages(broken)
    assert ids == ["topology.E002"] and "'ghost_queue'" in text


def test_route_to_missing_task():
    broken = dataclasses.replace(TOPOLOGY, routes=TOPOLOGY.routes + (Route("apps.nope.tasks.x", "main_worker"),))
    ids, text = _ids_and_messages(broken)
    assert ids == ["topology.E005"] and "apps.nope.tasks.x" in text


def test_schedule_with_missing_task_and_unconsumed_queue():
    base = TOPOLOGY.schedules[0]
    missing_task = dataclasses.replace(base, name="typo", task="apps.nope.tasks.y")
    undeclared = dataclasses.replace(base, name="lost", queue="nowhere")
    ids, text = _ids_and_messages(dataclasses.replace(
        TOPOLOGY, schedules=TOPOLOGY.schedules + (missing_task, undeclared)))
    assert sorted(ids) == ["topology.E006", "topology.E007"]
    assert "'typo'" in text and "apps.nope.tasks.y" in text and "'lost'" in text


def test_schedule_to_declared_but_unconsumed_queue():
    topology = dataclasses.replace(
        TOPOLOGY,
        queues=TOPOLOGY.queues + (Queue("parked", "x"),),
        schedules=(Schedule("parked-job", PROBE, TOPOLOGY.schedules[0].schedule, "parked"),),
    )
    ids, text = _ids_and_messages(topology)
    assert "topology.E008" in ids and "'parked-job'" in text


def test_manage_py_check_passes_on_the_real_topology():
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_topology_command_prints_queues_workers_tasks_and_schedules():
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "manage.py", "topology"], cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for word in ("QUEUES", "WORKERS", "TASKS", "SCHEDULES", "heavy_worker", "office-hours-reminders"):
        assert word in result.stdout


def test_a_test_only_task_routed_without_its_app_fails_the_check():
    from queueworks.core.checks import check_test_support_routes

    routed = ["queueworks.core.tasks.probe", "apps.testing.tasks.fault_crash"]
    errors = check_test_support_routes(routed, installed_apps=["queueworks.core"])
    assert [error.id for error in errors] == ["topology.E011"]
    assert "apps.testing.tasks.fault_crash" in errors[0].msg
    assert check_test_support_routes(routed, installed_apps=["queueworks.core", "apps.testing"]) == []


def test_production_routes_nothing_test_only():
    from projectname.topology import PRODUCTION_TOPOLOGY, TEST_SUPPORT_APP

    assert not [r.task for r in PRODUCTION_TOPOLOGY.routes if r.task.startswith(TEST_SUPPORT_APP)]


def _without_test_support(code: str, **env_overrides) -> str:
    """Run ``code`` in a real process without DJANGO_TEST_SUPPORT; its stdout."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_TEST_SUPPORT"}
    env.update(DJANGO_SETTINGS_MODULE="projectname.settings", **env_overrides)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_production_process_has_no_test_only_task_route_or_model():
    """A real process without DJANGO_TEST_SUPPORT: fault tasks unregistered and
    unrouted, the fault models (apps.testing) not registered."""
    code = ("import django; django.setup(); from django.conf import settings; "
            "from django.apps import apps; "
            "from queueworks.core.checks import project_task_names; "
            "print(sorted(t for t in project_task_names() if 'testing' in t or 'fault' in t), "
            "sorted(t for t in settings.CELERY_TASK_ROUTES if 'testing' in t), "
            "sorted(m._meta.label for m in apps.get_models() "
            "if m._meta.app_label == 'testing' or 'fault' in m.__name__.lower()))")
    assert _without_test_support(code) == "[] [] []"


def test_migrating_a_production_database_drops_the_fault_tables(tmp_path):
    """A database migrated while the fault tables lived in queueworks.reliability
    loses them on the next migrate; apps.testing's tables never appear."""
    code = ("import django; django.setup(); from django.core.management import call_command; "
            "from django.db import connection; "
            "call_command('migrate', 'reliability', '0001', verbosity=0); "
            "before = sorted(t for t in connection.introspection.table_names() if 'fault' in t); "
            "call_command('migrate', verbosity=0); "
            "after = sorted(t for t in connection.introspection.table_names() if 'fault' in t); "
            "print(before, after)")
    output = _without_test_support(code, DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}")
    assert output == "['reliability_faultaccount', 'reliability_faultexecution'] []"


def test_a_routed_task_whose_app_is_not_installed_is_explained_in_plain_words():
    from django.conf import settings

    task = "tests.queueworks.core.uninstalled_app.tasks.export_csv"
    broken = dataclasses.replace(TOPOLOGY, routes=TOPOLOGY.routes + (Route(task, "main_worker"),))
    errors = check_topology(broken, KNOWN, settings.INSTALLED_APPS)
    assert [error.id for error in errors] == ["topology.E010"]
    assert "its app 'tests.queueworks.core.uninstalled_app' is not in INSTALLED_APPS" in errors[0].msg
    assert errors[0].hint == ('Add "tests.queueworks.core.uninstalled_app" to INSTALLED_APPS '
                              "in projectname/settings.py.")


def test_a_task_missing_from_an_installed_app_is_still_a_missing_task():
    from django.conf import settings

    task = "queueworks.core.tasks.no_such_task"
    broken = dataclasses.replace(TOPOLOGY, routes=TOPOLOGY.routes + (Route(task, "main_worker"),))
    assert [e.id for e in check_topology(broken, KNOWN, settings.INSTALLED_APPS)] == ["topology.E005"]
