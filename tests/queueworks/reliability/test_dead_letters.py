"""`manage.py dead_letters`: list what died and why, re-queue it to its queue."""

import json
import time
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from queueworks.reliability.models import Effect, TaskDelivery
from apps.testing.models import FaultExecution
from queueworks.reliability.services import dead_letter_requeue, dead_letters_list
from apps.testing.services import fault_account_open
from apps.testing.tasks import fault_flaky

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _wait(predicate, timeout=60, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.mark.rabbitmq4
def test_list_then_requeue_runs_the_task_again_on_its_queue(live_system):
    run = uuid.uuid4().hex[:12]
    fault_account_open(run_id=run)
    # Fails 4 times: the first run and 3 retries, then it is dead-lettered.
    # Once re-queued (the "outage" is over) the 5th run succeeds.
    result = fault_flaky.delay(run, "requeue-me", failures=4)
    _wait(lambda: result.id in {d.id for d in dead_letters_list(limit=1000)}, 60, "dead letter")
    TaskDelivery.objects.create(task_id=result.id, task_name=fault_flaky.name, deliveries=2)

    out = StringIO()
    call_command("dead_letters", "list", "--json", stdout=out)
    listed = {item["id"]: item for item in json.loads(out.getvalue())}
    assert listed[result.id]["task_name"] == "apps.testing.tasks.fault_flaky"
    assert listed[result.id]["queue"] == "main_worker"
    assert listed[result.id]["reason"] == "rejected"
    text = StringIO()
    call_command("dead_letters", "list", stdout=text)
    assert result.id in text.getvalue() and "dead letter(s)." in text.getvalue()
    assert FaultExecution.objects.filter(run_id=run).count() == 4
    assert not Effect.objects.filter(key=f"fault:{run}:requeue-me").exists()

    out = StringIO()
    call_command("dead_letters", "requeue", result.id, stdout=out)
    assert f"re-queued {result.id}" in out.getvalue()

    _wait(lambda: Effect.objects.filter(key=f"fault:{run}:requeue-me").exists(), 60, "effect")
    assert result.id not in {d.id for d in dead_letters_list(limit=1000)}
    assert FaultExecution.objects.filter(run_id=run).count() == 5
    # Re-queueing starts the delivery count again.
    assert not TaskDelivery.objects.filter(task_id=result.id).exists()
    _wait(lambda: result.state == "SUCCESS", 30, "SUCCESS")


def test_requeue_needs_an_id_or_all_and_names_an_unknown_id(live_system):
    with pytest.raises(CommandError, match="ID or --all"):
        call_command("dead_letters", "requeue")
    with pytest.raises(CommandError, match="no dead letter with ID 'nope'"):
        call_command("dead_letters", "requeue", "nope")
    with pytest.raises(CommandError, match="--limit"):
        call_command("dead_letters", "list", "--limit", "0")
    with pytest.raises(ValueError):
        dead_letter_requeue()


@pytest.mark.rabbitmq4
def test_listing_a_dead_letter_many_times_never_drops_it(live_system):
    """Listing reads each dead letter and gives it back (the channel closes):
    a quorum queue counts that as a delivery, and RabbitMQ 4.x's default
    delivery limit (20) would then drop the letter silently.  The dead-letter
    queue has an explicit limit of its own (DEAD_LETTER_DELIVERY_LIMIT)."""
    from tests.support import rabbit

    run = uuid.uuid4().hex[:12]
    fault_account_open(run_id=run)
    result = fault_flaky.delay(run, "listed-often", failures=10)
    _wait(lambda: result.id in {d.id for d in dead_letters_list(limit=1000)}, 60, "dead letter")
    for _ in range(25):
        assert result.id in {d.id for d in dead_letters_list(limit=1000)}
    info = rabbit.queue_info(live_system.vhost, "dead_letter")
    from queueworks.core.topology import DEAD_LETTER_DELIVERY_LIMIT

    if info["type"] == "quorum":
        assert info["arguments"]["x-delivery-limit"] == DEAD_LETTER_DELIVERY_LIMIT
    out = StringIO()
    call_command("dead_letters", "discard", result.id, stdout=out)
    assert result.id not in {d.id for d in dead_letters_list(limit=1000)}


@pytest.mark.rabbitmq4
def test_a_dead_letter_queue_declared_by_an_earlier_version_is_used_and_named(
        broker_vhost, caplog, monkeypatch):
    """A quorum dead-letter queue from before DEAD_LETTER_DELIVERY_LIMIT: the
    workers' declaration is refused (PRECONDITION_FAILED); they keep running
    with the queue as it is, and doctor's 4.x check names it."""
    from kombu import Connection

    from queueworks.conf import settings as queueworks_settings
    from queueworks.doctor.checks_rabbitmq4 import upgrade_findings
    from queueworks.reliability.dead_letters import dead_letters_declare
    from tests.support import rabbit

    vhost = rabbit.create_vhost("test-dlq")
    try:
        monkeypatch.setattr(queueworks_settings, "TASK_QUEUE_TYPE", "quorum", raising=False)
        with Connection(rabbit.admin_broker_url(vhost)) as connection:
            channel = connection.default_channel
            channel.exchange_declare("dead_letter", "fanout", durable=True, auto_delete=False)
            channel.queue_declare("dead_letter", durable=True, auto_delete=False,
                                  arguments={"x-queue-type": "quorum"})
            channel.queue_bind("dead_letter", "dead_letter", "#")
            with caplog.at_level("WARNING", logger="queueworks.reliability.dead_letters"):
                dead_letters_declare(channel=channel)
            assert "run `manage.py migrate_queues`" in caplog.text
            # The caller's channel is still open and the queue still there.
            assert channel.queue_declare("dead_letter", passive=True)[1] == 0
        info = rabbit._api("GET", f"queues/{vhost}/dead_letter").json()
        assert "x-delivery-limit" not in info["arguments"]
        finding = {f.check: f for f in upgrade_findings(
            queues=[info], channels=[], own_users=set(), kombu_version=(5, 7, 0))}[
            "4.x: dead-letter queue limit"]
        assert finding.status == "WARN" and "migrate_queues" in finding.fix
    finally:
        rabbit.delete_vhost(vhost)
