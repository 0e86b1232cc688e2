"""The whole system on Redis (broker AND result backend): a second live system.

Same committed supervisor files, same test database; only CELERY_BROKER_URL and
CELERY_RESULT_BACKEND point at a private Redis database number.  The core
routing tests run unchanged against it, and the RabbitMQ-only guarantees are
reported at start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid

import pytest
import redis

from tests.integration import test_routing as routing
from tests.support.live import LiveSystem, PROJECT_ROOT, build_env, free_port, wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
LOCK_KEY = "projectname:test-session-lock"


def _claim_database() -> tuple[int, redis.Redis]:
    """A Redis DB number no other test session is using (1..15; 0 is development's)."""
    token = uuid.uuid4().hex
    for number in range(1, 16):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number)
        if client.set(LOCK_KEY, token, nx=True, ex=3600):
            for key in client.scan_iter(count=1000):
                if key != LOCK_KEY.encode():
                    client.delete(key)
            return number, client
    raise RuntimeError("all Redis databases 1-15 are claimed by other test sessions")


@contextlib.contextmanager
def _this_process_on(broker_url: str, result_backend: str):
    """Point this process's Celery app (producer, control, results) elsewhere, then back."""
    from projectname.celery import app

    def reset():
        # Forget (not close: kombu's global pools are shared) the connection and
        # producer pools, and the result backend, so the next use reads conf.
        app._after_fork()
        app._backend_cache = None
        if hasattr(app._local, "backend"):
            del app._local.backend

    # Celery reads both from the environment first (and .env puts them there).
    names = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    saved_env = {name: os.environ.get(name) for name in names}
    saved = (app.conf.broker_url, app.conf.result_backend)
    os.environ.update(dict(zip(names, (broker_url, result_backend))))
    app.conf.broker_url, app.conf.result_backend = broker_url, result_backend
    reset()
    try:
        yield app
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        app.conf.broker_url, app.conf.result_backend = saved
        reset()


@pytest.fixture(scope="module")
def redis_system(live_system, tmp_path_factory):
    number, client = _claim_database()
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{number}"
    run_dir = tmp_path_factory.mktemp("redis-system")
    (run_dir / "log").mkdir()
    web_port, flower_port = free_port(), free_port()
    # Results stay in django-db: the task API and the ops dashboard read them
    # from there (test_results_can_live_in_redis covers a Redis result backend).
    env = build_env(run_dir=run_dir, broker_url=url, database_url=live_system.database_url,
                    web_port=web_port, flower_port=flower_port)
    env["CELERY_RESULT_BACKEND"] = "django-db"
    system = LiveSystem(run_dir=run_dir, vhost=f"redis-db{number}", broker_url=url,
                        database_url=live_system.database_url, env=env,
                        web_port=web_port, flower_port=flower_port)
    try:
        with _this_process_on(url, "django-db"):
            system.start()
            yield system
    finally:
        system.stop()
        client.flushdb()


def test_routing_on_redis(redis_system):
    routing.test_task_runs_on_the_worker_bound_to_its_queue(redis_system)
    routing.test_heavy_worker_never_receives_main_worker_tasks(redis_system)
    routing.test_unrouted_task_goes_to_the_default_queue_and_is_consumed(redis_system)
    routing.test_inspect_active_queues_matches_the_topology(redis_system)


def test_results_can_live_in_redis(redis_system):
    """CELERY_RESULT_BACKEND=redis://: a worker stores results there, .get() reads them."""
    from queueworks.core.tasks import probe

    number, client = _claim_database()
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{number}"
    env = {**redis_system.env, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
    log = open(redis_system.run_dir / "log" / "results-worker.log", "ab")
    worker = subprocess.Popen(
        [LiveSystem.bin("celery"), "-A", "projectname", "worker", "--queues=main_worker",
         "--hostname=results@%h", "--pool=solo", "--without-gossip", "--without-mingle"],
        env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        with _this_process_on(url, url):
            token = uuid.uuid4().hex
            result = probe.delay(token)
            assert result.get(timeout=90)["token"] == token
            assert result.backend.__class__.__name__ == "RedisBackend"
        stored = client.get(f"celery-task-meta-{result.id}")
        assert stored is not None and json.loads(stored)["status"] == "SUCCESS"
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
        client.flushdb()


def test_workers_and_beat_warn_about_rabbitmq_only_guarantees(redis_system):
    marker = "RabbitMQ-only guarantee on a Redis broker"
    for program in ("main_worker", "heavy_worker", "beat"):
        log = redis_system.run_dir / "log" / f"{program}.log"
        text = wait_for(lambda: marker in log.read_text() and log.read_text(), 60,
                        message=f"{program} start-up warning")
        assert "x-max-priority" in text and "priority 0 runs FIRST" in text, program
        assert "visibility_timeout" in text, program

    check = subprocess.run([sys.executable, "manage.py", "check"], cwd=PROJECT_ROOT,
                           env=redis_system.env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr  # warnings, not errors
    assert "doctor.W001" in check.stderr


def test_doctor_on_redis(redis_system):
    env = {**redis_system.env, "DJANGO_SECRET_KEY": uuid.uuid4().hex * 2,
           "FLOWER_BASIC_AUTH": "ops:not-the-default"}
    result = subprocess.run([sys.executable, "manage.py", "doctor", "--json", "--timeout=2"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["broker"]["status"] == "OK" and "redis://" in findings["broker"]["message"]
    for queue in ("celery", "main_worker", "heavy"):
        assert findings.get(f"queue {queue}", {}).get("status") == "OK", findings
    assert findings["result backend"]["status"] == "OK"
    assert findings["redis guarantees"]["status"] == "WARN"



def test_task_api_on_redis(redis_system):
    from tests.queueworks.taskapi import test_live as api_tests
    from tests.queueworks.taskapi.conftest import Http, _make_user

    def http(api_user=None):
        return Http(f"http://127.0.0.1:{redis_system.web_port}", api_user)

    api = http(_make_user("live-operator", operator=True))  # the name the test expects
    api_tests.test_start_goes_pending_started_success_with_result(api, redis_system)
    api_tests.test_failing_task_reports_its_error(api, http)
    api_tests.test_queue_override_runs_on_the_other_queue(api, redis_system)


def test_flower_on_redis(redis_system):
    from tests.queueworks.ops import test_flower as flower_tests

    flower_tests.test_unauthenticated_requests_are_refused(redis_system)
    flower_tests.test_the_seed_apply_flow_runs_the_task_on_its_queues_worker(redis_system)
