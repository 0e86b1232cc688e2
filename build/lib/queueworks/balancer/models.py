from django.db import models
from django.utils import timezone


class BalanceDecision(models.Model):
    """One move of pool processes by the balancer, with the numbers behind it."""

    APPLIED = "applied"
    REFUSED = "refused"
    OUTCOMES = ((APPLIED, "applied"), (REFUSED, "refused by the worker"))

    # When the balancer decided (the moves themselves may take a second more).
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    host = models.CharField(max_length=255)
    program = models.CharField(max_length=255)
    # The program's queues, comma-separated (the backlog it was balanced on).
    queues = models.CharField(max_length=500)
    processes_before = models.PositiveIntegerField()
    processes_after = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=OUTCOMES, default=APPLIED)
    # Backlog, runtime, processes and expected wait of every balanced program.
    reason = models.TextField()
    # The worker's answer when it refused (e.g. every process busy).
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self):
        return f"{self.host} {self.program} {self.processes_before}->{self.processes_after}"
