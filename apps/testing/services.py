"""The fault-injection harness's accounting (bench/faults.py,
bench/faults_accept.py, tests/integration/test_faults*.py): every execution is
recorded, and a per-run balance moves only through an idempotent effect, so
executions vs balance show whether a fault applied an effect twice or lost it.

Test-only: used by the tasks in ``apps.testing.tasks``; the tables are this
app's models (``FaultExecution``, ``FaultAccount``).
"""

from __future__ import annotations

import os

from django.db.models import F

from queueworks.reliability.effects import effect_apply
from apps.testing.models import FaultAccount, FaultExecution


def fault_account_open(*, run_id: str) -> None:
    FaultAccount.objects.get_or_create(run_id=run_id)


def fault_execution_record(*, run_id: str, token: str) -> None:
    """Record one execution (the harness counts executions vs effects)."""
    FaultExecution.objects.create(run_id=run_id, token=token, pid=os.getpid())


def fault_executions_count(*, run_id: str, token: str) -> int:
    return FaultExecution.objects.filter(run_id=run_id, token=token).count()


def fault_effect_apply(*, run_id: str, token: str, task_id: str = "") -> bool:
    """The harness's side effect: +1 on the run's balance, once per token."""
    return effect_apply(
        key=f"fault:{run_id}:{token}", task_id=task_id,
        apply=lambda: FaultAccount.objects.filter(run_id=run_id).update(
            balance=F("balance") + 1),
    )
