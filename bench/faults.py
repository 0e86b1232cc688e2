"""Fault-injection harness: nothing accepted is lost, no effect is applied twice.

    .venv/bin/python bench/faults.py                      # every scenario, 10,000 tasks each
    .venv/bin/python bench/faults.py --tasks 500 --scenarios kill-worker,broker-restart
    .venv/bin/python bench/faults.py --tasks 2000 --scenarios cluster4-node-loss

Each scenario runs against real RabbitMQ and real supervisord-managed workers
(the committed deploy/conf.d worker programs): a private vhost on the system
RabbitMQ, and for ``broker-restart`` a throw-away RabbitMQ node of its own
(other ports, other node name, its own data dir) that it stops and starts;
the shared broker on 5672 is never touched.  ``cluster4-node-loss`` (only
when named) runs on the 3-node RabbitMQ 4.x cluster of tests/support/rabbitmq4.py
with quorum queues and SIGKILLs the node leading ``main_worker``'s queue once
a quarter of the tasks ran (tests/integration/test_cluster_rabbitmq4.py at
test size).  The database is a fresh SQLite
file unless ``--database-url`` is given.

Every task records its execution (``FaultExecution``) and applies one effect
idempotently (+1 on a balance, keyed by its token, see
``queueworks.reliability.effects.effect_apply``).  The table:

    scenario | sent | executed | effects applied | lost | duplicated effects | time

* sent: messages the broker accepted (publisher confirms), special ones included;
* executed: task executions (redeliveries make it larger than sent);
* effects applied: the balance;
* lost: tokens that never got their effect, plus special messages (poison,
  crash-looping, time-limited) that did not end where they must (dead-letter
  queue / FAILURE result);
* duplicated effects: balance minus distinct effect keys (an effect applied twice).

The harness (bench/faults_harness.py) is also a library:
tests/integration/test_faults*.py run the same scenarios with a few hundred
tasks; the throw-away node is bench/rabbit_node.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))
# The fault-injection tasks live in apps/testing, which this flag installs
# and routes (read when the topology is imported).
os.environ.setdefault("DJANGO_PROFILE", "development")
os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")

from bench.faults_harness import (  # noqa: E402
    TABLE_HEADER,
    Harness,
    ScenarioResult,
    workers_only_system,
)
from bench.rabbit_node import RabbitNode  # noqa: E402

SCENARIOS = (
    "baseline",
    "kill-pool-process",
    "kill-worker",
    "restart-workers",
    "broker-restart",
    "time-limits",
    "poison-message",
    "crash-every-delivery",
    # The accept paths (bench/faults_accept.py).
    "api-kill-web",
    "api-broker-restart",
    "bulk-cut-connection",
    "kill-bulk-worker",
)
# Named only: a 4.x cluster (tests/support/rabbitmq4.py), quorum queues.
CLUSTER4_SCENARIOS = ("cluster4-node-loss",)
# Scenarios that restart a broker: only on a throw-away node of their own.
NODE_SCENARIOS = ("broker-restart", "api-broker-restart")
# Scenarios that need the web program (gunicorn serving the Task API).
WEB_SCENARIOS = ("api-kill-web", "api-broker-restart")


# -- command line ---------------------------------------------------------------------
def _setup_django(database_url: str | None, work_dir: Path) -> str:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "faults-harness-secret-key")
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{work_dir / 'faults.sqlite3'}"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return os.environ["DATABASE_URL"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="effect tasks per scenario")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--work-ms", type=int, default=0, help="simulated work per task")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS + CLUSTER4_SCENARIOS]
    if unknown:
        parser.error(f"--scenarios: unknown {unknown}; choose from "
                     f"{', '.join(SCENARIOS + CLUSTER4_SCENARIOS)}")
    if args.tasks < 1:
        parser.error("--tasks must be at least 1")

    if set(chosen) & set(CLUSTER4_SCENARIOS):
        # Read with the settings: this process publishes to the same quorum
        # queues the workers declare.
        os.environ["TASK_QUEUE_TYPE"] = "quorum"
    work_dir = Path(tempfile.mkdtemp(prefix="faults-"))
    database_url = _setup_django(args.database_url, work_dir)
    from tests.support import rabbit

    from projectname.celery import app

    results: list[ScenarioResult] = []
    local = [s for s in chosen if s not in NODE_SCENARIOS + CLUSTER4_SCENARIOS]
    if local:
        vhost = rabbit.create_vhost("faults")
        url = rabbit.admin_broker_url(vhost)
        # Celery reads CELERY_BROKER_URL before its config: both, or the
        # harness's own publishes would go to the environment's broker.
        os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = url
        _reset_producer(app)
        system = workers_only_system(
            run_dir=work_dir / "system", broker_url=url, database_url=database_url, vhost=vhost,
            extra_programs=("web",) if set(local) & set(WEB_SCENARIOS) else ())
        try:
            print(f"starting workers on vhost {vhost} ...", flush=True)
            system.start()
            harness = Harness(system, work_ms=args.work_ms)
            for scenario in local:
                print(f"scenario {scenario} ({args.tasks} tasks) ...", flush=True)
                results.append(harness.run(scenario, args.tasks))
                print("  " + results[-1].row() + "  " + "; ".join(results[-1].notes), flush=True)
        finally:
            system.stop()
            rabbit.delete_vhost(vhost)
    on_node = [s for s in chosen if s in NODE_SCENARIOS]
    if on_node:
        node = RabbitNode(base_dir=work_dir / "rabbit")
        print(f"starting a throw-away RabbitMQ node {node.name} on port {node.port} ...", flush=True)
        node.start()
        os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = node.url
        _reset_producer(app)
        system = workers_only_system(
            run_dir=work_dir / "system-node", broker_url=node.url, database_url=database_url,
            extra_programs=("web",) if set(on_node) & set(WEB_SCENARIOS) else ())
        try:
            system.start()
            harness = Harness(system, rabbit_node=node, work_ms=args.work_ms)
            for scenario in on_node:
                print(f"scenario {scenario} ({args.tasks} tasks) ...", flush=True)
                results.append(harness.run(scenario, args.tasks))
                print("  " + results[-1].row() + "  " + "; ".join(results[-1].notes), flush=True)
        finally:
            system.stop()
            node.stop()

    if set(chosen) & set(CLUSTER4_SCENARIOS):
        results.append(_cluster4_node_loss(app, work_dir, database_url, args))

    print()
    print(f"Fault-injection run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, {args.tasks} tasks per scenario")
    print(TABLE_HEADER)
    order = SCENARIOS + CLUSTER4_SCENARIOS
    for result in sorted(results, key=lambda r: order.index(r.scenario)):
        print(result.row())
    for result in results:
        if result.notes:
            print(f"- {result.scenario}: " + "; ".join(result.notes))
    shutil.rmtree(work_dir, ignore_errors=True)
    return 0 if all(r.ok for r in results) else 1


def _cluster4_node_loss(app, work_dir: Path, database_url: str, args) -> ScenarioResult:
    from tests.support import rabbit, rabbitmq4

    print("starting the 3-node RabbitMQ 4.x cluster ...", flush=True)
    nodes = rabbitmq4.start_cluster(**rabbit.credentials())
    vhost = rabbitmq4.cluster_vhost_create(nodes[0])
    url = rabbitmq4.failover_url(nodes, vhost)
    os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = url
    _reset_producer(app)
    system = workers_only_system(run_dir=work_dir / "system-cluster4", broker_url=url,
                                 database_url=database_url, vhost=vhost)
    killed = []
    try:
        system.start()
        leader = rabbitmq4.queue_leader(nodes, vhost, "main_worker")

        def kill_leader() -> str:
            rabbitmq4.kill_node(leader, admin=rabbit.AUTH)
            killed.append(leader)
            return f"kill -9 {leader.name} (leader of main_worker)"

        harness = Harness(system, work_ms=args.work_ms, node_loss=kill_leader)
        print(f"scenario broker-node-loss on 4.x ({args.tasks} tasks) ...", flush=True)
        result = harness.run("broker-node-loss", args.tasks)
        result.scenario = "cluster4-node-loss"
        print("  " + result.row() + "  " + "; ".join(result.notes), flush=True)
        return result
    finally:
        system.stop()
        for node in killed:
            rabbitmq4.start_node(node, admin=rabbit.AUTH)
        rabbitmq4.cluster_vhost_delete(nodes[0], vhost)


def _reset_producer(app) -> None:
    """The app's next connection goes to its current broker_url."""
    from queueworks.dispatch import process_publisher
    from queueworks.dispatch.compat.celery import replace_broker_pool

    replace_broker_pool(app, None)

    process_publisher._process_publisher = None


if __name__ == "__main__":
    sys.exit(main())
