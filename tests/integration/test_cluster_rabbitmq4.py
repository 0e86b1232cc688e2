"""A RabbitMQ 4.x cluster node that leads the lane's quorum queue is killed
mid-run: nothing is lost and no effect is applied twice.

A 3-node 4.x cluster (tests/support/rabbitmq4.py, 4.3's defaults on) with a
vhost of its own; the worker programs of the topology (a second supervisord,
bench/faults_harness.py) connect to it through the failover list of its
nodes and declare quorum queues (replicated on the three nodes).  The test
publishes effect tasks, and once a quarter of them ran it SIGKILLs the node
leading ``main_worker``'s queue (a crashed host: no graceful leadership
hand-over).  The workers reconnect to the survivors, a new leader is elected,
the messages the dead node's consumers held come back; every task runs and
the idempotent effects are counted independently
(tests/support/fault_counts.py).  The killed node is started again after.

The 3.x equivalent, on the multi-host test bed, is tests/integration/test_cluster.py.
"""

from __future__ import annotations

import pytest
import requests

from bench.faults_harness import Harness, workers_only_system
from tests.support import rabbit, rabbitmq4
from tests.support.fault_counts import assert_counts_agree
from tests.support.live import wait_for

pytestmark = [
    pytest.mark.live, pytest.mark.rabbitmq4, pytest.mark.timeout(420),
    pytest.mark.only_on_broker("rabbitmq4"),
    pytest.mark.django_db(transaction=True),
]

TASKS = 200
QUEUE = "main_worker"


def _api(node: rabbitmq4.Node, method: str, path: str, **kwargs) -> requests.Response:
    response = requests.request(method, f"{node.management_url}/api/{path}", auth=rabbit.AUTH,
                                timeout=15, **kwargs)
    response.raise_for_status()
    return response


@pytest.fixture
def cluster4(broker_node):
    nodes = rabbitmq4.start_cluster(**rabbit.credentials())
    vhost = rabbitmq4.cluster_vhost_create(nodes[0])
    stopped = []
    try:
        yield nodes, vhost, stopped
    finally:
        for node in stopped:
            rabbitmq4.start_node(node, admin=rabbit.AUTH)
        rabbitmq4.cluster_vhost_delete(nodes[0], vhost)


def test_killing_the_leader_of_the_lanes_quorum_queue_loses_nothing_and_doubles_nothing(
        cluster4, live_system, tmp_path):
    nodes, vhost, stopped = cluster4
    system = workers_only_system(run_dir=tmp_path / "workers",
                                 broker_url=rabbitmq4.failover_url(nodes, vhost),
                                 database_url=live_system.database_url, vhost=vhost,
                                 env={"TASK_QUEUE_TYPE": "quorum"})
    system.start()
    try:
        info = _api(nodes[0], "GET", f"queues/{vhost}/{QUEUE}").json()
        assert info["type"] == "quorum", info
        # Replicated on every node: losing one leaves a majority.
        wait_for(lambda: len(_api(nodes[0], "GET", f"queues/{vhost}/{QUEUE}").json()
                             .get("members", [])) == len(nodes),
                 60, interval=1, message=f"{QUEUE} has a member on each node")
        leader = rabbitmq4.queue_leader(nodes, vhost, QUEUE)
        survivor = next(node for node in nodes if node is not leader)

        def kill_leader() -> str:
            rabbitmq4.kill_node(leader, admin=rabbit.AUTH)
            stopped.append(leader)
            return f"kill -9 {leader.name} (leader of {QUEUE})"

        harness = Harness(system, work_ms=20, stall_seconds=120, node_loss=kill_leader,
                          log=lambda *args: None)
        result = harness.run("broker-node-loss", TASKS)

        assert result.notes == [f"kill -9 {leader.name} (leader of {QUEUE})"], result.notes
        assert result.sent == TASKS and result.lost == 0 and result.duplicated == 0, result
        assert result.effects == TASKS and result.executed >= TASKS, result
        counted = assert_counts_agree(result, TASKS, vhost=vhost, hostport=survivor.amqp_hostport,
                                      auth=rabbit.AUTH)
        # A new leader on a surviving node serves the queue.
        new_leader = rabbitmq4.leader_of(survivor, vhost, QUEUE, admin=rabbit.AUTH)
        assert new_leader != leader.name and new_leader in {node.name for node in nodes}
        print(f"\n4.x cluster node loss: sent {result.sent}, run {len(counted.executed_tokens)} "
              f"({counted.executions} executions), lost {result.lost}, "
              f"duplicated effects {result.duplicated}; leader {leader.name} -> {new_leader}")
    finally:
        system.stop()
