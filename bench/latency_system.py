"""The system bench/latency.py and bench/cpu_policy.py measure: every program as
deployed (supervisord from the committed deploy/conf.d files) on a throw-away
vhost and a temporary SQLite database."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench import common
from bench.common import PROJECT_ROOT


def start_system(workdir: Path, vhost: str):
    import subprocess

    from tests.support.live import LiveSystem, build_env, free_port

    run_dir = workdir / "system"
    (run_dir / "log").mkdir(parents=True)
    broker_url = common.rabbit.broker_url(vhost)
    database_url = f"sqlite:///{workdir / 'latency.sqlite3'}"
    web_port, flower_port = free_port(), free_port()
    env = build_env(run_dir=run_dir, broker_url=broker_url, database_url=database_url,
                    web_port=web_port, flower_port=flower_port)
    # A load generator is one user sending far more than the per-user
    # throttles allow (queueworks/taskapi/throttles.py): measure latency, not 429s.
    env.update({f"TASKAPI_THROTTLE_{scope}": "1000000/min"
                for scope in ("START", "BULK", "READS", "ANON")})
    # This process enqueues and reads the database like the web process does.
    for key in ("CELERY_BROKER_URL", "DATABASE_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY"):
        os.environ[key] = env[key]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   env=env, cwd=PROJECT_ROOT, check=True)
    import django

    django.setup()
    from projectname.celery import app

    app.conf.broker_url = broker_url
    system = LiveSystem(run_dir=run_dir, vhost=vhost, broker_url=broker_url,
                        database_url=database_url, env=env, web_port=web_port,
                        flower_port=flower_port)
    system.start()
    return system

