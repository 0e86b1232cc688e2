"""What the fault-injection harness counts, per run.

* ``FaultExecution``: one row per execution of a fault task (redeliveries
  included);
* ``FaultAccount``: a balance that only an idempotent effect moves
  (``apps.testing.services.fault_effect_apply``).

Executions against the balance show whether a fault applied an effect twice
or lost it.  Test-only, like the whole app: production never creates these
tables.
"""

from django.db import models


class FaultExecution(models.Model):
    run_id = models.CharField(max_length=64, db_index=True)
    token = models.CharField(max_length=64)
    pid = models.IntegerField()
    executed_at = models.DateTimeField(auto_now_add=True)


class FaultAccount(models.Model):
    run_id = models.CharField(max_length=64, unique=True)
    balance = models.BigIntegerField(default=0)
