"""A fair sub-queue the topology no longer declares, on the live system:
doctor fails on the tasks it holds, migrate_queues moves them where a publish
would send them now, the workers run each once, and doctor then warns about
the empty queue until it is deleted (queueworks/limits/fair_stranded.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import amqp
import pytest

from tests.queueworks.doctor.conftest import by_check, doctor_json
from tests.support import rabbit
from tests.support.fault_counts import count_run
from tests.support.live import PROJECT_ROOT, wait_for


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_doctor_names_a_stranded_sub_queue_and_migrate_queues_runs_its_tasks_once(
        live_system, doctor_env):
    """The example topology declares no fair queue: a `celery.fair.2` left by
    an earlier one holds 20 effect tasks no worker consumes."""
    from apps.testing.services import fault_account_open
    from projectname.celery import app

    run_id = uuid.uuid4().hex[:12]
    fault_account_open(run_id=run_id)
    tokens = {f"s{n}" for n in range(20)}
    connection = rabbit.admin_connection(live_system.vhost)
    connection.channel().queue_declare("celery.fair.2", durable=True, auto_delete=False)
    try:
        channel = connection.channel()
        for token in sorted(tokens):
            # Celery's own message for the call, published straight into the sub-queue.
            headers, properties, body, _ = app.amqp.as_task_v2(
                str(uuid.uuid4()), "apps.testing.tasks.fault_effect", args=[run_id, token])
            channel.basic_publish_confirm(
                amqp.Message(body=json.dumps(body), content_type="application/json",
                             content_encoding="utf-8", delivery_mode=2,
                             application_headers=headers, **properties),
                exchange="", routing_key="celery.fair.2")
        wait_for(lambda: rabbit.queue_info(live_system.vhost, "celery.fair.2").get("messages")
                 == 20, 30, interval=0.5, message="20 messages stranded")
        # The alerts, /metrics and /ops/ count them on their queue.
        from queueworks.limits.fair import fair_queue_states
        from projectname.topology import TOPOLOGY

        assert fair_queue_states(TOPOLOGY)["celery"].ready >= 20
        _, report = doctor_json(doctor_env)
        finding = by_check(report)["stranded sub-queues of celery"]
        assert finding["status"] == "FAIL", finding
        assert "20 message(s) in celery.fair.2" in finding["message"], finding
        assert "migrate_queues" in finding["fix"]

        def manage(*args):
            return subprocess.run([sys.executable, "manage.py", "migrate_queues", *args],
                                  cwd=PROJECT_ROOT, env=live_system.env, capture_output=True,
                                  text=True, timeout=300)

        dry = manage("--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "celery.fair.2: 20 message(s)" in dry.stdout and "nothing changed" in dry.stdout
        assert count_run(run_id).executions == 0
        done = manage()
        assert done.returncode == 0, done.stderr
        assert "celery.fair.2: moved 20 to celery" in done.stdout, done.stdout
        counted = wait_for(lambda: (lambda c: c if c.effect_tokens == tokens else None)(
            count_run(run_id)), 120, interval=0.5, message="the 20 tasks ran")
        assert counted.balance == len(tokens) and counted.executions == len(tokens)
        _, report = doctor_json(doctor_env)
        finding = by_check(report)["stranded sub-queues of celery"]
        assert finding["status"] == "WARN" and "empty" in finding["message"], finding
        assert f"rabbitmqctl delete_queue --vhost {live_system.vhost} celery.fair.2" \
            in finding["fix"]
    finally:
        rabbit._api("DELETE", f"queues/{live_system.vhost}/celery.fair.2")
        connection.close()
    _, report = doctor_json(doctor_env)
    assert "stranded sub-queues of celery" not in by_check(report)
