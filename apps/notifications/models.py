from django.db import models


class Notification(models.Model):
    """An e-mail to one recipient, sent once by a worker on `main_worker`."""

    recipient = models.EmailField()
    subject = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Set in the same transaction as the send is recorded, so a redelivered
    # task sees it and does not mail twice.
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.subject} → {self.recipient}"
