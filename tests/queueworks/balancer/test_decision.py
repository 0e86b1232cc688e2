"""The balancer's decision function: numbers in, moves out (no broker, no workers)."""

from __future__ import annotations

import pytest

from queueworks.balancer.decision import UNKNOWN_RUNTIME, ProgramLoad, decide, targets


def load(name, processes, backlog, runtime=0.5, minimum=1, maximum=6, previous=0):
    return ProgramLoad(name=name, processes=processes, backlog=backlog, mean_runtime=runtime,
                       minimum=minimum, maximum=maximum, previous_backlog=previous)


def moves_of(decision) -> dict[str, tuple[int, int]]:
    return {move.program: (move.before, move.after) for move in decision.moves}


def run(loads, *, budget=6, max_shift=6, cooldown=10.0, now=100.0, last=None):
    return decide(loads, budget=budget, max_shift=max_shift, cooldown_seconds=cooldown, now=now,
                  last_move_at=last)


def test_processes_go_toward_the_growing_backlog_and_the_reason_has_the_numbers():
    decision = run([load("a", 2, 40), load("b", 2, 0), load("c", 2, 0)], max_shift=1)
    # One removal (max_shift 1) from an idle program, then one addition.
    assert moves_of(decision) == {"b": (2, 1), "a": (2, 3)}
    grow = next(move for move in decision.moves if move.program == "a")
    assert "a: 40 waiting x 0.50 s mean runtime / 2 processes = 10.0 s expected wait" in grow.reason
    assert "target 4 of budget 6" in grow.reason


def test_processes_stay_where_they_are_when_nothing_waits():
    # A drained burst keeps its processes until another program's backlog
    # claims them: no fork without waiting work to serve.
    decision = run([load("a", 4, 0), load("b", 1, 0), load("c", 1, 0)], max_shift=6)
    assert decision.moves == ()
    assert decision.summary.startswith("balanced")


def test_a_claim_takes_from_the_program_that_has_the_most():
    decision = run([load("a", 4, 0), load("b", 2, 0), load("c", 1, 2)], budget=7, max_shift=6)
    assert moves_of(decision) == {"a": (4, 3), "c": (1, 2)}


def test_a_program_with_tasks_waiting_gives_none_of_its_processes():
    # b's backlog is far smaller than a's, but b's tasks are waiting too:
    # taking b's processes would only move the wait onto them.
    decision = run([load("a", 2, 100), load("b", 3, 2), load("c", 1, 0)], budget=6)
    assert moves_of(decision) == {}
    assert targets([load("a", 2, 100), load("b", 3, 2), load("c", 2, 0)], budget=7) == \
        {"a": 3, "b": 3, "c": 1}


def test_a_backlog_empty_for_one_reading_keeps_its_processes():
    loads = [load("a", 1, 100), load("b", 4, 0, previous=30), load("c", 1, 0)]
    assert run(loads).moves == ()
    # Empty at two readings in a row: no longer held.
    loads[1] = load("b", 4, 0, previous=0)
    assert moves_of(run(loads)) == {"a": (1, 4), "b": (4, 1)}


def test_pools_beyond_the_budget_fall_back_to_the_minimums():
    # Restarted workers at their declared size hold more than the budget.
    wanted = targets([load("a", 4, 10), load("b", 4, 10)], budget=6)
    assert sum(wanted.values()) == 6


def test_all_queues_empty_at_an_even_split_moves_nothing():
    decision = run([load("a", 3, 0), load("b", 3, 0)])
    assert decision.moves == ()
    assert decision.summary.startswith("balanced")


def test_never_more_than_max_shift_added_or_removed_per_decision():
    decision = run([load("a", 1, 100), load("b", 5, 0)], max_shift=2)
    assert moves_of(decision) == {"b": (5, 3), "a": (1, 3)}


def test_never_above_the_budget_even_with_every_queue_full():
    loads = [load("a", 3, 100), load("b", 3, 100)]
    decision = run(loads, budget=6)
    assert decision.moves == ()
    # Budget already full and one queue idle: the addition waits for the removal.
    decision = run([load("a", 3, 100), load("b", 3, 0)], budget=6, max_shift=1)
    assert moves_of(decision) == {"b": (3, 2), "a": (3, 4)}
    assert sum(after for _, after in moves_of(decision).values()) == 6


def test_spare_processes_shared_in_proportion_to_the_waiting_work():
    # 60 x 0.5 = 30 s of work against 10 x 0.5 = 5 s: 6 spare processes shared 6:1.
    assert targets([load("a", 1, 60), load("b", 1, 10)], budget=8) == {"a": 6, "b": 2}


def test_never_below_a_minimum_or_above_a_maximum():
    loads = [load("a", 2, 1000, minimum=2, maximum=3), load("b", 2, 0, minimum=2, maximum=4),
             load("c", 2, 0, minimum=1, maximum=4)]
    decision = run(loads, budget=8)
    after = {load.name: load.processes for load in loads} | {
        name: new for name, (_, new) in moves_of(decision).items()}
    # a is capped at 3; c keeps its 2; the other process no pool holds goes to b.
    assert after == {"a": 3, "b": 3, "c": 2}
    assert targets(loads, budget=8) == {"a": 3, "b": 3, "c": 2}


def test_a_maximum_passes_the_rest_of_the_spare_to_the_others():
    loads = [load("a", 1, 1000, maximum=2), load("b", 1, 10, maximum=6)]
    assert targets(loads, budget=6) == {"a": 2, "b": 4}


def test_no_decision_within_the_cooldown():
    loads = [load("a", 1, 100), load("b", 5, 0)]
    decision = run(loads, now=105.0, last=100.0, cooldown=10.0)
    assert decision.moves == ()
    assert decision.summary == "cooldown: 5.0 s until the next decision"
    assert run(loads, now=110.0, last=100.0, cooldown=10.0).moves


def test_zero_runtime_data_decides_by_backlog_alone():
    loads = [load("a", 1, 30, runtime=None), load("b", 1, 10, runtime=None)]
    assert targets(loads, budget=6) == {"a": 4, "b": 2}
    decision = run(loads, max_shift=1)
    assert moves_of(decision) == {"a": (1, 2)}
    assert f"{UNKNOWN_RUNTIME:.2f} s runtime (none measured, assumed)" in decision.moves[0].reason


def test_an_unmeasured_program_counts_as_the_mean_of_the_measured_ones():
    loads = [load("a", 1, 10, runtime=None), load("b", 1, 10, runtime=2.0)]
    assert targets(loads, budget=8) == {"a": 4, "b": 4}


def test_longer_tasks_weigh_more_than_more_tasks():
    # 10 tasks of 3 s wait longer than 20 tasks of 0.1 s.
    assert targets([load("a", 1, 10, runtime=3.0), load("b", 1, 20, runtime=0.1)],
                   budget=6) == {"a": 5, "b": 1}


def test_no_more_processes_for_a_backlog_than_tasks_waiting():
    # Two waiting on a: its share stops at 2; processes no pool holds are spread evenly.
    assert targets([load("a", 2, 2), load("b", 1, 0), load("c", 1, 0)], budget=9) == \
        {"a": 3, "b": 3, "c": 3}
    assert targets([load("a", 1, 4), load("b", 1, 0)], budget=12) == {"a": 6, "b": 6}


def test_a_program_above_its_maximum_gives_back_even_when_busy():
    decision = run([load("a", 5, 100, maximum=3), load("b", 1, 0)], max_shift=1)
    assert moves_of(decision) == {"a": (5, 4), "b": (1, 2)}


# (The declaration refuses a budget below the sum of the minimums.)
@pytest.mark.parametrize("budget", [3, 4, 7, 12])
def test_targets_stay_within_the_budget_and_bounds(budget):
    loads = [load("a", 1, 7, runtime=0.3, maximum=5), load("b", 1, 3, runtime=1.1, maximum=5),
             load("c", 1, 0, maximum=5)]
    wanted = targets(loads, budget=budget)
    assert sum(wanted.values()) <= budget
    assert all(1 <= count <= 5 for count in wanted.values())
    if budget >= 7:
        assert sum(wanted.values()) == budget
