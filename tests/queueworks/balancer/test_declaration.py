"""The Balance declaration: its own limits, what it refuses in a topology, the
program it renders, and the command refusing what cannot work."""

from __future__ import annotations

import dataclasses

import pytest
from django.core.management import CommandError, call_command

from queueworks.core.checks import check_topology, project_task_names
from queueworks.core.supervisor import render_program_files
from queueworks.core.systemd import render_unit_files
from queueworks.core.topology import Balance
from projectname.topology import TOPOLOGY
from tests.queueworks.balancer.topology import BALANCED_TOPOLOGY, TOPOLOGY_PATH


def balance(**changes) -> Balance:
    return dataclasses.replace(BALANCED_TOPOLOGY.balance, **changes)


def with_worker(name: str, **changes):
    workers = tuple(dataclasses.replace(w, **changes) if w.name == name else w
                    for w in BALANCED_TOPOLOGY.workers)
    return dataclasses.replace(BALANCED_TOPOLOGY, workers=workers)


def test_off_unless_declared():
    assert TOPOLOGY.balance is None
    assert "balancer.conf" not in render_program_files(TOPOLOGY)


@pytest.mark.parametrize("changes, message", [
    ({"budget": 1}, "minimums add up to more than the budget"),
    ({"max_shift": 0}, "at least 1"),
    ({"limits": (("nobody", 1, 2),)}, "'nobody', which is not in workers"),
    ({"limits": (("balance_a", 3, 2),)}, "1 <= minimum <= maximum"),
    ({"workers": ()}, "name the worker programs"),
    ({"cooldown_seconds": -1}, "cooldown_seconds >= 0"),
])
def test_the_declaration_refuses_impossible_numbers(changes, message):
    with pytest.raises(ValueError, match=message):
        balance(**changes)


def test_bounds_per_program_never_above_the_budget():
    declared = balance(budget=4, max_processes=None, limits=(("balance_b", 2, 9),))
    assert declared.bounds("balance_a") == (1, 4)
    assert declared.bounds("balance_b") == (2, 4)


def test_the_test_topology_is_balanceable():
    assert BALANCED_TOPOLOGY.balance.problems(BALANCED_TOPOLOGY) == []


@pytest.mark.parametrize("changes, problem", [
    ({"pool": "solo"}, "a program balanced by processes runs one task per process"),
    ({"autoscale": (3, 1)}, "is autoscaled"),
    ({"concurrency": 5}, "outside its bounds 1-3"),
    ({"task_events": False, "task_events_lease": 0}, "could not learn its runtimes"),
])
def test_problems_name_the_program_and_the_reason(changes, problem):
    broken = with_worker("balance_a", **changes)
    problems = broken.balance.problems(broken)
    assert any("'balance_a'" in text and problem in text for text in problems), problems


def test_starting_over_the_budget_and_unknown_programs_are_problems():
    broken = dataclasses.replace(BALANCED_TOPOLOGY, balance=balance(
        workers=("balance_a", "balance_b", "ghost"), budget=3, max_processes=3))
    problems = broken.balance.problems(broken)
    assert "balanced worker 'ghost' is not a declared worker program" in problems
    over = with_worker("balance_a", concurrency=3)
    assert any("start with 5 processes, over the budget of 4" in p
               for p in over.balance.problems(over))


def test_the_system_check_refuses_a_balance_that_cannot_work():
    broken = with_worker("balance_b", pool="threads")
    errors = check_topology(broken, project_task_names())
    assert [e.id for e in errors if e.id == "topology.E012"] == ["topology.E012"]
    assert "balance_b" in next(e.msg for e in errors if e.id == "topology.E012")


def test_a_balancer_program_per_host_only_where_declared():
    files = render_program_files(BALANCED_TOPOLOGY)
    assert "command=python manage.py balance\n" in files["balancer.conf"]
    host_files = render_program_files(BALANCED_TOPOLOGY, host="web-2")
    assert "command=python manage.py balance --host=web-2\n" in host_files["balancer.conf"]
    assert "projectname-balancer.service" in render_unit_files(BALANCED_TOPOLOGY)


def test_the_command_refuses_a_topology_without_balance():
    with pytest.raises(CommandError, match="declares no balance"):
        call_command("balance", "--once")


def test_the_command_names_a_bad_topology_option():
    with pytest.raises(CommandError, match="--topology 'nowhere:TOPOLOGY'"):
        call_command("balance", "--once", "--topology", "nowhere:TOPOLOGY")
    with pytest.raises(CommandError, match="is not a Topology"):
        call_command("balance", "--once", "--topology", "tests.queueworks.balancer.topology:QUEUE_A")


def test_the_command_refuses_a_balance_that_cannot_work(monkeypatch):
    import tests.queueworks.balancer.topology as module

    monkeypatch.setattr(module, "BALANCED_TOPOLOGY", with_worker("balance_a", autoscale=(3, 1)))
    with pytest.raises(CommandError, match="Balance cannot work: .*autoscaled"):
        call_command("balance", "--once", "--topology", TOPOLOGY_PATH)


def test_the_command_balances_the_projects_own_topology_by_default(settings):
    # A project named anything but "projectname" names its topology in
    # QUEUEWORKS_TOPOLOGY; without --topology the balancer must use it.
    settings.QUEUEWORKS_TOPOLOGY = "tests.queueworks.balancer.topology:QUEUE_A"
    with pytest.raises(CommandError, match="'tests.queueworks.balancer.topology:QUEUE_A' is not a Topology"):
        call_command("balance", "--once")
