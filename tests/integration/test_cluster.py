"""Scale-out: a RabbitMQ node dies mid-run and nothing is lost or applied twice.

Builds the multi-host test bed (deploy/testbed/testbed.sh): a private 3-node
RabbitMQ cluster (its own node names, ports, data dirs and cookie; the system
node on 5672 is never touched), two worker hosts in network namespaces with
their own supervisord, quorum queues and the failover broker URL list.  Then
it runs a small scenario 2 of bench/cluster.py: publish 300 probes, stop the
node the producer is connected to after 30 % were published, publish the rest;
then 50 probes with an 8 s countdown, which must wait in the broker's delayed-
delivery queues (quorum queues) and run no earlier than their countdown.

When the machine cannot host the test bed (no root, no network namespaces,
no RabbitMQ) it is skipped with that reason, and under CI=true it fails.
Everything it creates (namespaces, veths, bridge, nodes, dirs) is removed
afterwards, also when it fails.
"""

from __future__ import annotations

import json
from collections import Counter
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from queueworks.core.broker_access import APP_USER, TEST_ADMIN_USER
from tests.support.requirements import require
from tests.support.testbed import free_base_port, free_link_local_net

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TESTBED = PROJECT_ROOT / "deploy" / "testbed" / "testbed.sh"
TASKS = 300



@pytest.fixture
def testbed_env():
    tag = f"t{os.getpid() % 10000:04d}"
    # Short: supervisord's unix socket path must stay under 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="tb-"))
    env = dict(
        os.environ,
        TESTBED_TAG=tag,
        TESTBED_STATE=str(base / f"state-{tag}"),
        TESTBED_BASE_PORT=str(free_base_port()),
        TESTBED_NET=str(free_link_local_net()),
        TESTBED_HOSTS="2",
        TESTBED_PROGRAMS="main_worker",
    )
    env.pop("TESTBED_DATABASE_URL", None)  # SQLite in the state dir
    check = subprocess.run(["bash", str(TESTBED), "check"], env=env, capture_output=True,
                           text=True, timeout=60)
    require(check.returncode != 3, f"the cluster test bed (root, network namespaces, "
                                   f"RabbitMQ): {check.stdout.strip()}")
    assert check.returncode == 0, check.stdout + check.stderr
    try:
        yield env
    finally:
        down = subprocess.run(["bash", str(TESTBED), "down"], env=env, capture_output=True,
                              text=True, timeout=180)
        shutil.rmtree(base, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


def _leftovers(env) -> list[str]:
    tag = env["TESTBED_TAG"]
    found = []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [line.split()[0] for line in namespaces.splitlines() if line.startswith(f"tb-{tag}-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link tb{tag}-…" for line in links.splitlines() if f": tb{tag}-" in line]
    epmd = subprocess.run(["epmd", "-names"], capture_output=True, text=True).stdout
    found += [f"node {line.split()[1]}" for line in epmd.splitlines()
              if line.startswith(f"name tb{tag}")]
    if Path(env["TESTBED_STATE"]).exists():
        found.append(env["TESTBED_STATE"])
    return found


def assert_recounted(scenario: dict, output: str) -> None:
    """Count again from the raw evidence bench/cluster.py saved (published
    tokens, probe rows, stored results, queue depths) and compare."""
    evidence = scenario["extra"]["evidence"]
    name = scenario["scenario"]
    published = set(evidence["published"])
    assert len(evidence["published"]) == len(published) == scenario["sent"], (name, output)
    lost = published - set(evidence["finished_tokens"])
    assert lost == set(), (name, sorted(lost)[:10], output)
    assert scenario["lost"] == len(lost), (name, output)
    rows = Counter(evidence["row_tokens"])
    duplicated = sum(count - 1 for count in rows.values())
    assert duplicated == scenario["duplicated_effects"] == 0, (name, duplicated, output)
    assert set(rows) == published, (name, output)
    # Every published task stored a SUCCESS result (result rows).
    succeeded = set(evidence["result_tokens"].get("SUCCESS", []))
    other = {status: sorted(set(tokens) & (published - succeeded))
             for status, tokens in evidence["result_tokens"].items() if status != "SUCCESS"}
    assert succeeded == published, (name, sorted(published - succeeded)[:10], other, output)
    # Nothing left waiting in any queue of the cluster.
    assert all(not depth for depth in evidence["queue_depths"].values()), (
        name, evidence["queue_depths"], output)


@pytest.mark.live
@pytest.mark.timeout(280)
def test_stopping_the_producers_broker_node_loses_nothing(testbed_env, tmp_path):
    results = tmp_path / "results.json"
    # Its own process group: on a timeout the whole group (bench and any
    # testbed.sh it runs) is killed before the fixture tears the bed down.
    bench = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "bench" / "cluster.py"), "--tasks", str(TASKS),
         "--scenarios", "2,d", "--tag", testbed_env["TESTBED_TAG"],
         "--base-port", testbed_env["TESTBED_BASE_PORT"], "--net", testbed_env["TESTBED_NET"],
         "--hosts", "2", "--programs", "main_worker", "--state", testbed_env["TESTBED_STATE"],
         "--json", str(results)],
        env=testbed_env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        stdout, stderr = bench.communicate()
        pytest.fail(f"bench/cluster.py did not finish in 240 s:\n{stdout}\n{stderr[-4000:]}")
    run = subprocess.CompletedProcess(bench.args, bench.returncode, stdout, stderr)
    output = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}"
    assert results.exists(), output
    result, delayed = json.loads(results.read_text())

    assert result["sent"] == TASKS, output
    assert result["publish_errors"] == 0, output
    assert result["executed"] == TASKS, output
    assert result["lost"] == 0, output
    assert result["duplicated_effects"] == 0, output
    # The producer was on the node that died and carried on through another one.
    assert result["extra"]["producer_port_after"] not in (0, result["extra"]["producer_port_before"]), output
    # The workers that were on it reconnected to the survivors and consume again.
    stopped_port = str(result["extra"]["producer_port_before"])
    assert not any(key.startswith(stopped_port) for key in result["extra"]["connections_after"]), output
    assert result["extra"]["workers_after"] == result["extra"]["workers_before"] == [
        "main_worker@h1", "main_worker@h2"], output
    # No guest on the cluster; workers and producer connect as the project's
    # least-privilege user (testbed.sh makes it and an administrator).
    assert result["extra"]["broker_users"] == {
        "users": sorted([APP_USER, TEST_ADMIN_USER]), "connected": [APP_USER]}, output
    # Both worker hosts took part, and workers are named <program>@<host>.
    assert set(result["split"]) == {"main_worker@h1", "main_worker@h2"}, output
    # Countdown tasks on quorum queues wait in the broker (Celery's native
    # delayed delivery over topic exchanges), not unacknowledged in a worker.
    assert delayed["executed"] == delayed["sent"] > 0, output
    assert delayed["extra"]["delayed_in_broker"] == delayed["sent"], output
    assert delayed["extra"]["first_start_after"] >= 7.5, output
    assert run.returncode == 0, output
    for scenario in (result, delayed):
        assert_recounted(scenario, output)

    # bench/cluster.py tears the test bed down itself: nothing may be left.
    assert _leftovers(testbed_env) == [], output
