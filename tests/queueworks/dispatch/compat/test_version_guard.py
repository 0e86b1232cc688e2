"""On a library version other than the tested one: one clear warning, and the
fast paths that need its internals take the library's stock path.

Each case runs in a fresh interpreter whose library reports another version
before the project imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[4]

SCRIPT = """
import json
import {library}
{library}.__version__ = "99.0.0"
import django
django.setup()
from amqp import Message

from queueworks.dispatch import lean
from queueworks.dispatch.compat import amqp as compat_amqp

sent = []

class Channel:
    def _basic_publish(self, *args, **kwargs):
        sent.append("plain")

    def basic_publish(self, *args, **kwargs):
        sent.append("stock")

compat_amqp.basic_publish_no_wait(Channel(), Message(b"x"), routing_key="q")

from celery.schedules import crontab

from queueworks.core import cluster
from queueworks.core.results_backend import UpsertDatabaseBackend
from queueworks.dispatch.process_publisher import publisher_supported
from queueworks.dispatch.compat import celery as compat_celery
from queueworks.dispatch.pool import SoloPool

pool_info = SoloPool(limit=1, timeout=30, soft_timeout=20, max_memory_per_child=1000).info

print(json.dumps({{
    "lean_path": lean.lean_path_supported(),
    "publish": sent[0],
    "cluster_step": "queueworks.core.cluster:ClusterDelayedDelivery"
                    in cluster.ClusterConsumer.Blueprint.default_steps,
    "crontab_minute": compat_celery.crontab_fields(crontab(minute="*/20"))["minute"],
    "pool_limits": [list(pool_info["timeouts"]), pool_info.get("max-memory-per-child")],
    "confirming_publisher": publisher_supported(),
    "upsert_results": UpsertDatabaseBackend._store_result is UpsertDatabaseBackend.store_state,
}}))
"""


def _run(library: str) -> tuple[dict, list[str]]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "projectname.settings",
           "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "test-only-secret-key"),
           "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(library=library)], env=env,
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # The project's logging configuration: "<time> WARNING <process> <logger>: ...".
    warnings = [line for line in result.stderr.splitlines()
                if " WARNING " in line and " queueworks.dispatch.compat: " in line]
    return json.loads(result.stdout.strip().splitlines()[-1]), warnings


STOCK = {
    "celery": {"lean_path": False, "publish": "plain", "cluster_step": False,
               "crontab_minute": "0,20,40", "pool_limits": [[], None],
               "confirming_publisher": True, "upsert_results": False},
    "amqp": {"lean_path": False, "publish": "stock", "cluster_step": True,
             "crontab_minute": "*/20", "pool_limits": [[20, 30], 1000],
             "confirming_publisher": False, "upsert_results": True},
}


@pytest.mark.parametrize("library", sorted(STOCK))
def test_another_version_warns_once_and_takes_the_stock_path(library):
    outcome, warnings = _run(library)
    assert outcome == STOCK[library]
    assert len(warnings) == 1, warnings
    assert "99.0.0 is installed" in warnings[0] and "stock path" in warnings[0]


def test_the_tested_versions_warn_nothing():
    import amqp
    import billiard
    import celery

    from queueworks.dispatch.compat import amqp as a, billiard as b, celery as c

    assert (c.SUPPORTED, a.SUPPORTED, b.SUPPORTED) == (True, True, True)
    assert (celery.__version__, amqp.__version__, billiard.__version__) == (
        c.TESTED_VERSION, a.TESTED_VERSION, b.TESTED_VERSION)
