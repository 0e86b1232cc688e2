"""doctor names what would break on RabbitMQ 4.x, from the management API."""

import uuid

import amqp
import pytest

from queueworks.doctor.checks_rabbitmq4 import upgrade_findings
from tests.queueworks.doctor.conftest import by_check, doctor_json
from tests.support import rabbit
from tests.support.live import wait_for

QUEUES = [
    {"name": "main_worker", "durable": True, "exclusive": False, "type": "quorum",
     "arguments": {"x-queue-type": "quorum", "x-dead-letter-exchange": "dead_letter"},
     "effective_policy_definition": {}},
    {"name": "legacy", "durable": True, "exclusive": False, "type": "quorum",
     "arguments": {"x-queue-type": "quorum"}, "effective_policy_definition": {}},
    {"name": "by_policy", "durable": True, "exclusive": False, "type": "quorum",
     "arguments": {}, "effective_policy_definition": {"dead-letter-exchange": "dlx"}},
    {"name": "replies", "durable": False, "exclusive": False, "type": "classic",
     "arguments": {}, "effective_policy_definition": {}},
    {"name": "mine", "durable": False, "exclusive": True, "type": "classic",
     "arguments": {}, "effective_policy_definition": {}},
    {"name": "mirrored", "durable": True, "exclusive": False, "type": "classic",
     "arguments": {}, "effective_policy_definition": {"ha-mode": "all"}},
]


def _by_check(findings):
    return {f.check: f for f in findings}


def test_each_4x_breakage_is_named_with_its_queues():
    findings = _by_check(upgrade_findings(
        queues=QUEUES, channels=[{"user": "other-app", "global_prefetch_count": 10}],
        own_users={"projectname", "doctor"}, kombu_version=(5, 7, 0)))
    assert findings["4.x: transient queues"].status == "WARN"
    assert "replies" in findings["4.x: transient queues"].message
    assert "mine" not in findings["4.x: transient queues"].message
    assert findings["4.x: mirrored queues"].status == "WARN"
    assert "mirrored" in findings["4.x: mirrored queues"].message
    assert findings["4.x: dead-letter targets"].status == "WARN"
    assert "legacy" in findings["4.x: dead-letter targets"].message
    assert "by_policy" not in findings["4.x: dead-letter targets"].message
    assert "main_worker" not in findings["4.x: dead-letter targets"].message
    assert findings["4.x: global QoS"].status == "WARN"
    assert "other-app" in findings["4.x: global QoS"].message


def test_the_projects_own_global_qos_is_fine_from_kombu_5_7_only():
    channels = [{"user": "projectname", "global_prefetch_count": 4}]
    new = _by_check(upgrade_findings(queues=[], channels=channels, own_users={"projectname", "doctor"},
                                     kombu_version=(5, 7, 0)))
    old = _by_check(upgrade_findings(queues=[], channels=channels, own_users={"projectname", "doctor"},
                                     kombu_version=(5, 6, 2)))
    assert new["4.x: global QoS"].status == "OK"
    assert old["4.x: global QoS"].status == "WARN"
    assert all(f.status == "OK" for f in new.values())


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
# 3.x only: 4.x refuses the transient queue this test declares.
@pytest.mark.only_on_broker("rabbitmq3")
def test_doctor_names_a_transient_queue_and_a_mirroring_policy_on_the_live_broker(
        live_system, doctor_env):
    vhost = live_system.vhost
    name = f"test.transient-{uuid.uuid4().hex[:6]}"
    connection = amqp.Connection(host=rabbit.AMQP_HOSTPORT, userid=rabbit.AUTH[0],
                                 password=rabbit.AUTH[1], virtual_host=vhost)
    connection.connect()
    policy = f"policies/{vhost}/test-ha"
    try:
        connection.channel().queue_declare(name, durable=False, exclusive=False,
                                           auto_delete=False)
        rabbit._api("PUT", policy, json={"pattern": r"^test\.transient-", "apply-to": "queues",
                                         "definition": {"ha-mode": "all"}})

        def named():
            findings = by_check(doctor_json(doctor_env)[1])
            return findings if name in findings["4.x: mirrored queues"]["message"] else None

        findings = wait_for(named, 60, interval=2, message="doctor names the ha-* policy")
        assert findings["4.x: transient queues"]["status"] == "WARN"
        assert name in findings["4.x: transient queues"]["message"]
        assert findings["4.x: mirrored queues"]["status"] == "WARN"
        assert "upgrade-rabbitmq-4.md" in findings["4.x: mirrored queues"]["fix"]
    finally:
        rabbit._api("DELETE", policy)
        connection.channel().queue_delete(name)
        connection.close()
        # The management API lists a deleted queue for a moment: the session's
        # later doctor runs must not see it.
        wait_for(lambda: name not in [q["name"] for q in rabbit._api(
            "GET", f"queues/{vhost}").json()], 30, message=f"{name} gone from the API")


@pytest.mark.parametrize("arguments, policy, status", [
    ({"x-queue-type": "quorum"}, {}, "WARN"),
    ({"x-queue-type": "quorum", "x-delivery-limit": 20}, {}, "WARN"),
    ({"x-queue-type": "quorum", "x-delivery-limit": 2**31 - 1}, {}, "OK"),
    ({"x-queue-type": "quorum"}, {"delivery-limit": -1}, "OK"),
])
def test_the_dead_letter_queue_needs_a_delivery_limit_of_its_own_as_a_quorum_queue(
        arguments, policy, status):
    queue = {"name": "dead_letter", "durable": True, "exclusive": False, "type": "quorum",
             "arguments": arguments, "effective_policy_definition": policy}
    finding = _by_check(upgrade_findings(queues=[queue], channels=[], own_users=set(),
                                         kombu_version=(5, 7, 0)))["4.x: dead-letter queue limit"]
    assert finding.status == status, finding
    if status == "WARN":
        assert "drops it" in finding.message and "migrate_queues" in finding.fix
    classic = {**queue, "type": "classic", "arguments": {}}
    assert _by_check(upgrade_findings(queues=[classic], channels=[], own_users=set(),
                                      kombu_version=(5, 7, 0)))[
        "4.x: dead-letter queue limit"].status == "OK"
