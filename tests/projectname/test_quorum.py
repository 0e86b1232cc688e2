"""Quorum queues as a topology option, and the failover broker URL list."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from projectname.topology import TOPOLOGY, Queue, Topology
from queueworks.core.topology import DEAD_LETTER_EXCHANGE, QUORUM_DELIVERY_LIMIT

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_quorum_topology_declares_quorum_queues_on_topic_exchanges():
    quorum = TOPOLOGY.with_queue_type("quorum")
    for queue in quorum.celery_queues():
        assert queue.queue_arguments["x-queue-type"] == "quorum"
        # Quorum queues refuse x-max-priority (4.x: two levels without it).
        assert "x-max-priority" not in queue.queue_arguments
        # Never RabbitMQ 4's silent default (20, then dropped): both explicit.
        assert queue.queue_arguments["x-delivery-limit"] == QUORUM_DELIVERY_LIMIT
        assert queue.queue_arguments["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE
        # Native delayed delivery (ETA/countdown) needs topic exchanges.
        assert queue.exchange.type == "topic"
        assert queue.routing_key == queue.name
    # The declared topology itself is unchanged (classic, direct).
    assert {q.exchange.type for q in TOPOLOGY.celery_queues()} == {"direct"}


def test_quorum_keeps_the_declared_priorities_for_rabbitmq_4s_two_levels():
    quorum = TOPOLOGY.with_queue_type("quorum")
    assert ({q.name: q.max_priority for q in quorum.queues}
            == {q.name: q.max_priority for q in TOPOLOGY.queues})


def test_a_queue_that_chooses_its_type_keeps_it():
    topology = Topology(queues=(Queue("pinned", "x", queue_type="classic", max_priority=9),
                                Queue("follows", "x")), workers=(), routes=(), schedules=())
    quorum = {q.name: q for q in topology.with_queue_type("quorum").queues}
    assert quorum["pinned"].arguments() == {"x-max-priority": 9,
                                            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    assert quorum["follows"].arguments()["x-queue-type"] == "quorum"


def test_a_quorum_queue_without_a_dead_letter_target_is_refused():
    with pytest.raises(ValueError, match="drops a message past its delivery limit"):
        Queue("urgent", "x", queue_type="quorum", dead_letter=False)
    with pytest.raises(ValueError, match="delivery_limit"):
        Queue("urgent", "x", queue_type="quorum", delivery_limit=0)
    with pytest.raises(ValueError, match="queue_type"):
        Queue("urgent", "x", queue_type="stream")
    # Left to the deployment's type, it stays classic rather than lose messages.
    lane = Topology(queues=(Queue("lane", "x", dead_letter=False),), workers=(), routes=(),
                    schedules=()).with_queue_type("quorum")
    assert lane.queues[0].kind == "classic"


def _celery_conf(**env) -> dict:
    code = (
        "import json, django; django.setup();"
        "from projectname.celery import app; c = app.conf;"
        "from celery.utils.imports import symbol_by_name;"
        "print(json.dumps({'queues': {q.name: [q.exchange.type, q.queue_arguments] for q in c.task_queues},"
        " 'detect': c.worker_detect_quorum_queues, 'default_type': c.task_default_queue_type,"
        " 'alternates': len(app.connection_for_write().alt),"
        " 'steps': list(symbol_by_name(c.worker_consumer).Blueprint.default_steps)}))"
    )
    environment = dict(os.environ, DJANGO_SETTINGS_MODULE="projectname.settings",
                       DJANGO_SECRET_KEY="test", **env)
    out = subprocess.run([sys.executable, "-c", code], env=environment, cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_task_queue_type_quorum_switches_every_queue_and_celery_settings():
    urls = ";".join(f"pyamqp://nobody:unreachable@127.0.0.1:{port}//" for port in (5701, 5702, 5703))
    conf = _celery_conf(TASK_QUEUE_TYPE="quorum", CELERY_BROKER_URL=urls)
    assert set(conf["queues"]) >= set(TOPOLOGY.queue_names())
    for name in TOPOLOGY.queue_names():
        exchange_type, arguments = conf["queues"][name]
        assert (exchange_type, arguments["x-queue-type"]) == ("topic", "quorum")
    assert conf["detect"] is True
    assert conf["default_type"] == "quorum"
    # kombu failover: the first URL plus its alternates.
    assert conf["alternates"] == 3
    # Delayed delivery is set up once through the connected node, not per URL.
    assert "queueworks.core.cluster:ClusterDelayedDelivery" in conf["steps"]
    assert "celery.worker.consumer.delayed_delivery:DelayedDelivery" not in conf["steps"]


def test_classic_is_the_default():
    conf = _celery_conf()
    assert "queueworks.core.cluster:ClusterDelayedDelivery" not in conf["steps"]
    for name in TOPOLOGY.queue_names():
        assert conf["queues"][name][0] == "direct"
        assert "x-queue-type" not in (conf["queues"][name][1] or {})


def test_bad_queue_type_is_a_clear_error():
    code = "import django; django.setup()"
    environment = dict(os.environ, DJANGO_SETTINGS_MODULE="projectname.settings",
                       DJANGO_SECRET_KEY="test", TASK_QUEUE_TYPE="stream")
    out = subprocess.run([sys.executable, "-c", code], env=environment, cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "TASK_QUEUE_TYPE must be 'classic' or 'quorum', not 'stream'" in out.stderr



def test_a_queue_override_on_topic_exchanges_routes_to_the_overriding_queue():
    """With quorum queues every exchange is a topic exchange: a routed task
    sent to another queue must carry that queue's routing key, or the
    exchange routes it nowhere and RabbitMQ drops it (confirmed, unroutable)."""
    code = (
        "import json, django; django.setup();"
        "from projectname.celery import app;"
        "options = app.amqp.router.route({'queue': 'celery'}, 'queueworks.core.tasks.probe',"
        " args=(), kwargs={});"
        "print(json.dumps([options['queue'].exchange.name, options['queue'].exchange.type,"
        " options.get('routing_key') or options['queue'].routing_key]))"
    )
    environment = dict(os.environ, DJANGO_SETTINGS_MODULE="projectname.settings",
                       DJANGO_SECRET_KEY="test", TASK_QUEUE_TYPE="quorum")
    out = subprocess.run([sys.executable, "-c", code], env=environment, cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["celery", "topic", "celery"]
