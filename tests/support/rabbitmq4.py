"""RabbitMQ 4.x nodes for the suite's 4.x pass
(``QUEUEWORKS_TEST_BROKER=rabbitmq4 pytest -m rabbitmq4``, docs/testing.md).

The nodes run from the Debian trixie root that deploy/testbed/rabbitmq4.sh
builds (`deploy/bin/ensure-system.sh --test`), on ports of their own next to
the distribution's 3.x broker on 5672, with RabbitMQ 4.3's defaults turned on
(transient non-exclusive queues and global QoS denied).  Starting is
idempotent: a node that already runs with the same ports is reused, so a
second session starts in seconds.

Each node gets what ``make install`` gives the 3.x broker: the test
administrator (the node's first-boot user), the project's vhost, its
least-privilege user with the permissions of queueworks/core/broker_access.py
and the monitoring user, with the passwords of .env.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from queueworks.core.broker_access import APP_USER
from queueworks.core.broker_setup import Management, ensure

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT_ROOT / "deploy" / "testbed" / "rabbitmq4.sh"
# Away from 5672 (the distribution's node), 5701-5709 (deploy/testbed) and
# the random 20000-32000 range of bench/rabbit_node.py.
SINGLE_NAME, SINGLE_PORT = "qw4", 5682
CLUSTER_SIZE, CLUSTER_BASE_PORT = 3, 5690


@dataclass(frozen=True)
class Node:
    name: str
    amqp_port: int

    @property
    def management_port(self) -> int:
        return self.amqp_port + 10000

    @property
    def amqp_hostport(self) -> str:
        return f"127.0.0.1:{self.amqp_port}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"


SINGLE = Node(SINGLE_NAME, SINGLE_PORT)
CLUSTER = tuple(Node(f"r4c{i + 1}", CLUSTER_BASE_PORT + i) for i in range(CLUSTER_SIZE))

BROKERS = ("rabbitmq3", "rabbitmq4")
# An environment variable, not a pytest option: the test settings, which
# load before any pytest hook, and every program the live system starts
# must make the same choice.
TEST_BROKER = os.environ.get("QUEUEWORKS_TEST_BROKER") or "rabbitmq3"
if TEST_BROKER not in BROKERS:
    raise SystemExit(f"QUEUEWORKS_TEST_BROKER must be one of {BROKERS}, not {TEST_BROKER!r}")


def apply_test_broker(environ=os.environ) -> None:
    """On the 4.x pass, the environment names the 4.x node (over .env's
    values) and declares quorum queues, the production default on 4.x."""
    if TEST_BROKER != "rabbitmq4":
        return
    environ["RABBITMQ_MANAGEMENT_URL"] = SINGLE.management_url
    environ["RABBITMQ_AMQP_HOSTPORT"] = SINGLE.amqp_hostport
    environ.setdefault("TASK_QUEUE_TYPE", "quorum")


def script(*args: str, admin: tuple[str, str], timeout: float = 600) -> str:
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "RABBITMQ4_USER": admin[0], "RABBITMQ4_PASS": admin[1]},
    )
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmq4.sh {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stderr[-3000:]}")
    return result.stdout


def provision(node: Node, *, admin: tuple[str, str], app_password: str,
              monitor_password: str) -> None:
    """The project's vhost and users on ``node``, as ``make install`` makes them."""
    ensure(management=Management(node.management_url, *admin),
           management_url=node.management_url, hostport=node.amqp_hostport, vhost=APP_USER,
           app_user=APP_USER, app_password=app_password, monitor_password=monitor_password)


def start_single(**credentials) -> Node:
    script("start", SINGLE.name, str(SINGLE.amqp_port), str(SINGLE.management_port),
           str(SINGLE.amqp_port + 20000), admin=credentials["admin"])
    provision(SINGLE, **credentials)
    return SINGLE


def start_cluster(**credentials) -> tuple[Node, ...]:
    script("cluster", str(CLUSTER_SIZE), str(CLUSTER_BASE_PORT), admin=credentials["admin"])
    # Users and vhosts are cluster-wide: provisioning one member is enough.
    provision(CLUSTER[0], **credentials)
    return CLUSTER


def stop_node(node: Node, *, admin: tuple[str, str]) -> None:
    script("stop", node.name, admin=admin)


def kill_node(node: Node, *, admin: tuple[str, str]) -> None:
    """SIGKILL ``node`` (a crashed host): no graceful leadership hand-over."""
    script("kill", node.name, admin=admin)


def start_node(node: Node, *, admin: tuple[str, str]) -> None:
    """Start one stopped cluster member again (it rejoins its cluster)."""
    script("start", node.name, str(node.amqp_port), str(node.management_port),
           str(node.amqp_port + 20000), admin=admin)


def cluster_vhost_create(seed: Node) -> str:
    """A throw-away vhost on the cluster of ``seed`` with the suite's users'
    permissions (tests/support/rabbit.py's, on the 4.x nodes)."""
    import uuid
    from urllib.parse import quote

    import requests

    from queueworks.core.broker_access import MONITOR_PERMISSIONS
    from tests.support import rabbit

    vhost = f"test-cluster-{uuid.uuid4().hex[:10]}"

    def put(path: str, **kwargs) -> None:
        requests.put(f"{seed.management_url}/api/{path}", auth=rabbit.AUTH, timeout=15,
                     **kwargs).raise_for_status()

    put(f"vhosts/{vhost}")
    for user, permissions in ((rabbit.AUTH[0], {"configure": ".*", "write": ".*", "read": ".*"}),
                              (rabbit.APP_AUTH[0], rabbit.test_vhost_permissions()),
                              (rabbit.MONITOR_AUTH[0], MONITOR_PERMISSIONS.as_json())):
        put(f"permissions/{vhost}/{quote(user, safe='')}", json=permissions)
    return vhost


def cluster_vhost_delete(node: Node, vhost: str) -> None:
    import requests

    from tests.support import rabbit

    requests.delete(f"{node.management_url}/api/vhosts/{vhost}", auth=rabbit.AUTH, timeout=30)


def failover_url(nodes, vhost: str) -> str:
    """The project's user on every node of the cluster, in order (kombu fails over)."""
    from urllib.parse import quote

    from tests.support import rabbit

    user, password = (quote(part, safe="") for part in rabbit.APP_AUTH)
    return ";".join(f"pyamqp://{user}:{password}@{node.amqp_hostport}/{vhost}" for node in nodes)


def leader_of(node: Node, vhost: str, queue: str, *, admin: tuple[str, str]) -> str:
    """The node name (``r4cN``) leading quorum queue ``queue``."""
    import requests

    response = requests.get(f"{node.management_url}/api/queues/{vhost}/{queue}", auth=admin,
                            timeout=10)
    response.raise_for_status()
    return response.json()["leader"].partition("@")[0]


def queue_leader(nodes, vhost: str, queue: str) -> Node:
    """The cluster member leading quorum queue ``queue`` (asked of the first node)."""
    from tests.support import rabbit

    name = leader_of(nodes[0], vhost, queue, admin=rabbit.AUTH)
    return next(node for node in nodes if node.name == name)
