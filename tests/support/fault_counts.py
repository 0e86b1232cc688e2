"""Counting a fault scenario's outcome without bench/faults.py's arithmetic:
from the effect table, the execution rows and the broker's queues, then
comparing with what the harness reported."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.broker import queue_depth
from tests.support.live import wait_for


@dataclass
class Counted:
    effect_tokens: set[str]
    balance: int
    executions: int
    executed_tokens: set[str]


def count_run(run_id: str) -> Counted:
    from queueworks.reliability.models import Effect
    from apps.testing.models import FaultAccount, FaultExecution

    prefix = f"fault:{run_id}:"
    keys = list(Effect.objects.filter(key__startswith=prefix).values_list("key", flat=True))
    return Counted(
        effect_tokens={key[len(prefix):] for key in keys},
        balance=FaultAccount.objects.get(run_id=run_id).balance,
        executions=FaultExecution.objects.filter(run_id=run_id).count(),
        executed_tokens=set(FaultExecution.objects.filter(run_id=run_id)
                            .values_list("token", flat=True)),
    )


def assert_counts_agree(result, tasks: int, *, vhost: str, hostport: str | None = None,
                        auth: tuple[str, str] | None = None,
                        queues=("main_worker", "heavy")) -> Counted:
    """Fail when the run lost or doubled an effect, or when the harness's own
    counts disagree with the tables and the broker."""
    tokens = {f"t{i}" for i in range(tasks)}
    # Nothing of the run is left waiting in the broker (beat's own messages
    # come and go, so wait until the queues are empty at one moment); then
    # no redelivery can still add an execution while we count.
    wait_for(lambda: all(not queue_depth(vhost, queue, hostport=hostport, auth=auth)
                         for queue in queues),
             60, interval=0.5, message=f"{queues} empty after the run")
    counted = count_run(result.run_id)
    lost = tokens - counted.effect_tokens
    # Effect keys are unique: an effect applied twice shows as balance > rows.
    duplicated = counted.balance - len(counted.effect_tokens)
    assert lost == set(), f"{len(lost)} token(s) never got their effect: {sorted(lost)[:10]}"
    assert duplicated == 0, f"{duplicated} effect(s) applied twice"
    assert tokens <= counted.executed_tokens, sorted(tokens - counted.executed_tokens)[:10]
    # The harness's figures, against the independent count (its executions
    # are a snapshot taken a moment earlier).
    assert result.duplicated == duplicated, (result, duplicated)
    assert result.effects == counted.balance, (result, counted.balance)
    assert tasks <= result.executed <= counted.executions, (result, counted.executions)
    assert result.lost == len(lost), (result, lost)
    return counted
