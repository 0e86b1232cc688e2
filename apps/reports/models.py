from django.db import models


class Sale(models.Model):
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    sold_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.amount} at {self.sold_at}"


class PeriodReport(models.Model):
    """Sales aggregated per day over [start_date, end_date], built on `heavy`."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"

    start_date = models.DateField()
    end_date = models.DateField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    sale_count = models.PositiveIntegerField(default=0)
    total_amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    per_day = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"Report {self.start_date}..{self.end_date} ({self.status})"
