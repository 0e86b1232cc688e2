from django.db import models


class ProbeRun(models.Model):
    """One execution record of a diagnostic probe task.

    The token is unique, so a redelivered probe updates its row instead of
    adding one: tests count rows to prove "executed once, nothing lost".
    """

    token = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=255)
    queue = models.CharField(max_length=255)
    deliveries = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.token} on {self.hostname}"
