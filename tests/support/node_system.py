"""The system under test on a throw-away RabbitMQ node (bench/rabbit_node.py):
the node, and a supervisord running the worker programs against it
(bench/faults_harness.py's ``workers_only_system``), sharing the session's
test database.  Used by the test modules that restart or stop a broker, which
they may never do to the shared one on 5672."""

from __future__ import annotations

import contextlib
from pathlib import Path

from bench.faults_harness import workers_only_system
from bench.rabbit_node import RabbitNode
from tests.support import rabbit


@contextlib.contextmanager
def node_system(base: Path, *, extra_programs: tuple[str, ...] = (),
                system_env: dict[str, str] | None = None, app_publishes_here: bool = False,
                **node_options):
    """Yields the started system; ``system.rabbit_node`` is its node.

    ``app_publishes_here``: this process's Celery app publishes to the node
    too (for harness steps that run in the test process, e.g. sweeps).
    ``node_options`` go to ``RabbitNode`` (consumer_timeout_ms, ...).
    """
    from django.db import connection

    from projectname.celery import app
    from tests.conftest import _database_url

    node = RabbitNode(base_dir=base / "node", **node_options)
    try:
        node.start()
        system = workers_only_system(run_dir=base / "system", broker_url=node.url,
                                     database_url=_database_url(connection.settings_dict),
                                     extra_programs=extra_programs, env=system_env)
        system.rabbit_node = node
        publishing = (rabbit.app_publishing_to(app, node.url) if app_publishes_here
                      else contextlib.nullcontext())
        with publishing:
            try:
                system.start()
                yield system
            finally:
                system.stop()
    finally:
        node.stop()
