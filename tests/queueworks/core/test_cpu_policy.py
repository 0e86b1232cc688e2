"""Worker programs run under the CPU scheduling policy the topology declares."""

import os
import subprocess
import sys

import pytest

from queueworks.core import cpu_policy
from bench.common import tree as process_tree
from queueworks.core.supervisor import programs, worker_environment
from projectname.topology import CPU_POLICIES, TOPOLOGY, Worker
from tests.support.live import wait_for
from tests.support.requirements import require


@pytest.fixture
def _scheduling_policies():
    require(hasattr(os, "sched_setscheduler"), "os.sched_setscheduler (scheduling policies are Linux's)")


linux_only = pytest.mark.usefixtures("_scheduling_policies")


def test_policy_names_agree_with_the_topology():
    assert tuple(cpu_policy.POLICIES) == CPU_POLICIES


def test_unknown_policy_is_refused_by_name():
    with pytest.raises(ValueError, match="cpu_policy must be one of"):
        Worker(name="w", queues=("q",), cpu_policy="fast")
    with pytest.raises(cpu_policy.UnknownPolicy, match="CPU_SCHEDULING_POLICY='fast'"):
        cpu_policy.apply("fast")


def test_every_worker_program_carries_its_policy():
    for worker in TOPOLOGY.workers:
        environment = dict(worker_environment(worker))
        # "normal" is the default and needs no variable.
        expected = None if worker.cpu_policy == "normal" else worker.cpu_policy
        assert environment.get(cpu_policy.ENVIRONMENT_VARIABLE) == expected
    flower = next(p for p in programs(TOPOLOGY) if p.name == "flower")
    assert dict(flower.environment)[cpu_policy.ENVIRONMENT_VARIABLE] == "batch"


@linux_only
@pytest.mark.parametrize("name, constant", [("batch", "SCHED_BATCH"), ("idle", "SCHED_IDLE")])
def test_applied_to_the_process_its_threads_and_its_children(name, constant):
    # In a child interpreter: a policy cannot be raised back without privileges.
    code = (
        "import os, threading, time\n"
        "from queueworks.core import cpu_policy\n"
        "started = threading.Event()\n"
        "t = threading.Thread(target=lambda: (started.set(), time.sleep(1)), daemon=True)\n"
        "t.start(); started.wait()\n"
        "assert cpu_policy.apply_from_environment() == os.environ['CPU_SCHEDULING_POLICY']\n"
        "tids = [int(x) for x in os.listdir('/proc/self/task')]\n"
        "print(sorted({os.sched_getscheduler(tid) for tid in tids}), len(tids))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if os.sched_getscheduler(0) == getattr(os, %r) else 1)\n"
        "print(os.waitpid(pid, 0)[1])\n" % constant
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "CPU_SCHEDULING_POLICY": name}, timeout=60)
    assert result.returncode == 0, result.stderr
    policies, status = result.stdout.splitlines()
    assert policies == f"[{getattr(os, constant)}] 2"  # both threads
    assert status == "0"  # the forked child inherited it


def test_no_variable_leaves_the_process_alone(monkeypatch):
    monkeypatch.delenv(cpu_policy.ENVIRONMENT_VARIABLE, raising=False)
    assert cpu_policy.apply_from_environment() is None


def test_user_facing_lanes_keep_the_normal_policy():
    # Under SCHED_IDLE any busy process of normal priority (a cron job, a
    # backup) takes the cores and user-facing tasks wait for seconds.
    for name in ("main_worker", "heavy_worker"):
        assert TOPOLOGY.worker_named(name).cpu_policy == "normal", name
    assert Worker(name="w", queues=("q",)).cpu_policy == "normal"
    # No program is declared SCHED_IDLE by default: it can be starved outright.
    assert all(worker.cpu_policy != "idle" for worker in TOPOLOGY.workers)


@linux_only
@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_live_worker_processes_and_pool_children_run_under_their_declared_policy(live_system):
    """Every worker program (prefork: parent and pool children) as supervisord
    started it from the committed program files, and Flower."""
    constants = {name: value for name, value in cpu_policy.POLICIES.items()}
    info = {p["name"]: p for p in live_system.rpc().getAllProcessInfo()}
    expected = {worker.name: constants[worker.cpu_policy] for worker in TOPOLOGY.workers}
    expected["flower"] = os.SCHED_BATCH
    assert expected["main_worker"] == os.SCHED_OTHER
    for name, policy in expected.items():
        pid = info[name]["pid"]
        if name == "main_worker":
            # The prefork parent plus its two pool processes.
            wait_for(lambda: len(process_tree(pid)) >= 3, timeout=30,
                     message="main_worker's pool processes")
        tree = process_tree(pid)
        policies = {os.sched_getscheduler(process) for process in tree}
        assert policies == {policy}, (name, tree, policies)
    web = info["web"]["pid"]
    assert os.sched_getscheduler(web) == os.SCHED_OTHER


def test_a_bad_value_in_a_worker_is_reported_by_name_and_the_worker_runs_on(
        monkeypatch, caplog):
    monkeypatch.setenv(cpu_policy.ENVIRONMENT_VARIABLE, "fast")
    cpu_policy.on_worker_init()  # does not raise
    assert "CPU_SCHEDULING_POLICY='fast': expected one of normal, batch, idle" in caplog.text
