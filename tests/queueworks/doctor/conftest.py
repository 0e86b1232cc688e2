"""A RabbitMQ user of doctor's own on the live vhost (full rights there), so a
healthy system really is healthy whatever the project's user may do."""

import json
import subprocess
import sys
import uuid

import pytest

from tests.support import rabbit
from tests.support.live import PROJECT_ROOT


@pytest.fixture(scope="session")
def doctor_user(live_system):
    user, password = f"doctor-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    rabbit._api("PUT", f"users/{user}", json={"password": password, "tags": "monitoring"})
    rabbit._api("PUT", f"permissions/{live_system.vhost}/{user}",
                json={"configure": ".*", "write": ".*", "read": ".*"})
    yield user, password
    rabbit._api("DELETE", f"users/{user}")


@pytest.fixture
def doctor_env(live_system, doctor_user):
    user, password = doctor_user
    host = rabbit.AMQP_HOSTPORT
    return {**live_system.env,
            "CELERY_BROKER_URL": f"pyamqp://{user}:{password}@{host}/{live_system.vhost}",
            "FLOWER_BASIC_AUTH": "ops:not-the-default",
            # .env (made from .env.example) gives the live system the dev key.
            "DJANGO_SECRET_KEY": f"doctor-{uuid.uuid4().hex}{uuid.uuid4().hex}"}


def run_doctor(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "doctor", "--timeout=2", *args],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def doctor_json(env: dict, *args: str) -> tuple[int, dict]:
    result = run_doctor(env, "--json", *args)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def by_check(report: dict) -> dict[str, dict]:
    return {finding["check"]: finding for finding in report["findings"]}
