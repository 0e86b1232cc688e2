"""The production profile: each refused development default stops a real
process (manage.py, a celery worker, Flower through run_flower) with a
message naming the setting; a valid production environment passes
`check --deploy` without a warning."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from queueworks.core import profiles

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PYTHON = sys.executable
CELERY = str(Path(sys.executable).parent / "celery")

GOOD_SECRET = "k3V9x-Qm2Lr7Tz8Wp4Yc6Nb1Hd5Jf0Gs-Ua9Ee3Ri7Oo2Pl8Kk4Mm6Nn1Bb5Vv0Cc"
VALID_PRODUCTION = {
    "DJANGO_PROFILE": "production",
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": GOOD_SECRET,
    "DJANGO_ALLOWED_HOSTS": "tasks.example.org",
    "CELERY_BROKER_URL": "pyamqp://projectname:Z7q-long-operator-password@127.0.0.1:5672/projectname",
    "FLOWER_BASIC_AUTH": "operator:an-operators-long-password",
    "RABBITMQ_MANAGEMENT_USER": "projectname-monitor",
    "RABBITMQ_MANAGEMENT_PASSWORD": "a-monitoring-long-password",
}
# Every variable the settings read that a developer's .env could supply.
CLEARED = ("DJANGO_TEST_SUPPORT", "CELERY_EAGER", "DJANGO_SECURE_SSL_REDIRECT",
           "DJANGO_SECURE_HSTS_SECONDS")


def production_env(**overrides) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    env.update(VALID_PRODUCTION, DJANGO_SETTINGS_MODULE="projectname.settings",
               PYTHONUNBUFFERED="1")
    # The project's .env must not fill in what the test leaves out: settings
    # read it with overwrite=False, so an empty value in the environment wins.
    for key, value in overrides.items():
        env[key] = value
    return env


def run(argv, env, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout)


REFUSED = [
    ("debug", {"DJANGO_DEBUG": "1"}, "DJANGO_DEBUG"),
    ("example secret", {"DJANGO_SECRET_KEY": "dev-only-insecure-secret-key"}, "DJANGO_SECRET_KEY"),
    ("short secret", {"DJANGO_SECRET_KEY": "x7Qp2-short"}, "DJANGO_SECRET_KEY"),
    ("no secret", {"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY"),
    ("guest broker user",
     {"CELERY_BROKER_URL": "pyamqp://guest:a-long-enough-password@127.0.0.1:5672//"},
     "CELERY_BROKER_URL"),
    ("example broker password",
     {"CELERY_BROKER_URL": "pyamqp://projectname:change-me@127.0.0.1:5672/projectname"},
     "CELERY_BROKER_URL"),
    ("example flower credentials", {"FLOWER_BASIC_AUTH": "flower:change-me"}, "FLOWER_BASIC_AUTH"),
    ("no flower credentials", {"FLOWER_BASIC_AUTH": ""}, "FLOWER_BASIC_AUTH"),
    ("wildcard hosts", {"DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS"),
    ("test support", {"DJANGO_TEST_SUPPORT": "1"}, "DJANGO_TEST_SUPPORT"),
]


def _assert_refused(result, setting):
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Refusing to start" in result.stderr and setting in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(("case", "overrides", "setting"), REFUSED, ids=[c[0] for c in REFUSED])
def test_manage_py_check_refuses_each_development_default(case, overrides, setting):
    _assert_refused(run([PYTHON, "manage.py", "check"], production_env(**overrides)), setting)


@pytest.mark.parametrize(("case", "overrides", "setting"), REFUSED[:1] + REFUSED[4:5] + REFUSED[8:9],
                         ids=["debug", "guest broker user", "wildcard hosts"])
def test_runserver_refuses_before_serving(case, overrides, setting):
    result = run([PYTHON, "manage.py", "runserver", "--noreload", "127.0.0.1:0"],
                 production_env(**overrides))
    _assert_refused(result, setting)


def test_a_celery_worker_refuses_the_guest_broker_user():
    env = production_env(CELERY_BROKER_URL="pyamqp://guest:guest@127.0.0.1:5672//")
    result = run([CELERY, "-A", "projectname", "worker", "-Q", "celery", "--pool=solo"], env)
    _assert_refused(result, "CELERY_BROKER_URL")


def test_beat_refuses_a_debug_production():
    result = run([CELERY, "-A", "projectname", "beat"], production_env(DJANGO_DEBUG="1"))
    _assert_refused(result, "DJANGO_DEBUG")


def test_flower_refuses_the_example_credentials():
    result = run([PYTHON, "manage.py", "run_flower", "--port=0"],
                 production_env(FLOWER_BASIC_AUTH="flower:change-me"))
    _assert_refused(result, "FLOWER_BASIC_AUTH")


def test_gunicorn_refuses_before_forking_workers():
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    result = run([gunicorn, "projectname.wsgi:application", "--bind=127.0.0.1:0", "--workers=1"],
                 production_env(DJANGO_SECRET_KEY="dev-only-insecure-secret-key"))
    _assert_refused(result, "DJANGO_SECRET_KEY")


def test_an_unset_profile_means_production():
    # The refusal itself, as the settings call it when DJANGO_PROFILE is unset
    # (a developer's .env sets it, so the settings path is not used here).
    code = ("from queueworks.core import profiles; profiles.enforce(profile=profiles.PRODUCTION, "
            "profile_was_set=False, problems=['DJANGO_DEBUG is on'])")
    result = run([PYTHON, "-c", code], os.environ.copy())
    _assert_refused(result, "DJANGO_DEBUG")
    assert "DJANGO_PROFILE is not set, which means production" in result.stderr


def test_an_unknown_profile_is_refused():
    result = run([PYTHON, "manage.py", "check"], production_env(DJANGO_PROFILE="staging"))
    assert result.returncode != 0 and "DJANGO_PROFILE must be one of" in result.stderr


def test_check_deploy_is_clean_under_a_valid_production_environment():
    result = run([PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                 production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_the_development_profile_accepts_its_defaults():
    assert profiles.production_problems(
        debug=False, secret_key=GOOD_SECRET, allowed_hosts=["tasks.example.org"],
        broker_url=VALID_PRODUCTION["CELERY_BROKER_URL"], environ=VALID_PRODUCTION) == []
    result = run([PYTHON, "manage.py", "check"],
                 production_env(DJANGO_PROFILE="development", DJANGO_DEBUG="1",
                                DJANGO_SECRET_KEY="dev-only-insecure-secret-key"))
    assert result.returncode == 0, result.stderr


def test_every_node_of_a_failover_broker_url_is_checked():
    url = ("pyamqp://projectname:Z7q-long-operator-password@rabbit-1/projectname;"
           "pyamqp://guest:guest@rabbit-2/projectname")
    problems = profiles.broker_url_problems("CELERY_BROKER_URL", url)
    assert any("'guest'" in problem for problem in problems)


def test_the_development_profile_is_labelled_on_every_admin_page(client):
    from django.contrib import admin

    assert "DEVELOPMENT" in admin.site.site_header
    assert "DEVELOPMENT profile" in client.get("/admin/login/").content.decode()
