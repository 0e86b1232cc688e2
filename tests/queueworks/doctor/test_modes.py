"""CELERY_EAGER: tasks inline without a broker in development, refused with DEBUG off."""

import subprocess
import sys

from queueworks.doctor.checks import eager_errors
from tests.support.live import PROJECT_ROOT, free_port


def _manage(*args, env_extra: dict, tmp_path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "DJANGO_SECRET_KEY": "modes-test-key",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'eager.sqlite3'}",
           # Nothing listens here: eager mode must not need the broker.
           "CELERY_BROKER_URL": f"pyamqp://nobody:unreachable@127.0.0.1:{free_port()}//",
           "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend", **env_extra}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def test_eager_with_debug_off_is_an_error():
    [error] = eager_errors(eager=True, debug=False)
    assert error.id == "doctor.E001" and "CELERY_EAGER" in error.hint
    assert eager_errors(eager=True, debug=True) == []
    assert eager_errors(eager=False, debug=False) == []


def test_manage_py_check_refuses_eager_in_production(tmp_path):
    production = _manage("check", env_extra={"CELERY_EAGER": "1", "DJANGO_DEBUG": "0"},
                         tmp_path=tmp_path)
    assert production.returncode != 0
    assert "doctor.E001" in production.stderr and "Traceback" not in production.stderr
    development = _manage("check", env_extra={"CELERY_EAGER": "1", "DJANGO_DEBUG": "1"},
                          tmp_path=tmp_path)
    assert development.returncode == 0, development.stderr


def test_eager_runs_tasks_inline_without_a_broker_and_propagates_errors(tmp_path):
    env = {"CELERY_EAGER": "1", "DJANGO_DEBUG": "1"}
    assert _manage("migrate", "--noinput", env_extra=env, tmp_path=tmp_path).returncode == 0
    script = """
from django.core import mail
from apps.notifications.models import Notification
from apps.notifications.tasks import send_notification
from apps.reports.tasks import build_period_report
n = Notification.objects.create(recipient="dev@example.com", subject="Inline", body="no broker")
result = send_notification.delay(n.pk)
n.refresh_from_db()
print("sent", result.get(), n.sent_at is not None, len(mail.outbox))
try:
    build_period_report.delay(424242)
except Exception as error:
    print("raised", type(error).__name__)
"""
    result = _manage("shell", "-c", script, env_extra=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sent True True 1" in result.stdout
    assert "raised DoesNotExist" in result.stdout


def test_a_non_database_result_backend_warns_when_the_api_reads_results():
    from queueworks.doctor.checks import results_backend_warnings

    [warning] = results_backend_warnings(result_backend="redis://127.0.0.1:6379/0",
                                         installed=["queueworks.taskapi", "queueworks.ops"])
    assert warning.id == "doctor.W002" and "queueworks.taskapi" in warning.msg
    assert results_backend_warnings(result_backend="django-db", installed=["queueworks.taskapi"]) == []
    assert results_backend_warnings(result_backend="queueworks.core.results_backend:UpsertDatabaseBackend",
                                    installed=["queueworks.taskapi"]) == []
    assert results_backend_warnings(result_backend="redis://x", installed=["queueworks.core"]) == []
