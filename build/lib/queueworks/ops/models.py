from django.conf import settings
from django.db import models
from django.db.models import Q


class OpsPermissions(models.Model):
    """No table rows: only carries the dashboard's action permissions."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("control_programs", "Can start, stop and restart supervisor programs"),
            ("requeue_dead_letters",
             "Can re-queue dead letters of allowlisted tasks, and discard dead letters"),
            ("requeue_any_dead_letter",
             "Can re-queue dead letters of tasks outside the Task API's allowlist"),
        ]


class AlertIncident(models.Model):
    """One continuous period during which a queue crossed its alert condition.

    At most one open incident per (queue, kind): the partial unique
    constraint makes concurrent dashboard polls (several gunicorn workers)
    agree on a single incident, so the alert goes out once per incident.
    """

    KIND_WAIT = "wait"
    KIND_NO_CONSUMER = "no_consumer"
    # ``queue`` then names the program (a worker or beat) in BACKOFF/FATAL.
    KIND_CRASH_LOOP = "crash_loop"
    KIND_CHOICES = [(KIND_WAIT, "Oldest message waits too long"),
                    (KIND_NO_CONSUMER, "Work waiting with no consumer"),
                    (KIND_CRASH_LOOP, "Program keeps crashing")]

    queue = models.CharField(max_length=255)
    kind = models.CharField(max_length=32, choices=KIND_CHOICES)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    detail = models.TextField(blank=True)
    # Highest wait (seconds) or ready count seen during the incident.
    peak = models.FloatField(default=0)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["queue", "kind"], condition=Q(closed_at__isnull=True),
                name="ops_one_open_incident_per_queue_kind",
            ),
        ]

    def __str__(self):
        return f"{self.queue} {self.kind} since {self.opened_at:%Y-%m-%d %H:%M:%S}"


class TaskRerun(models.Model):
    """A one-click re-run from the dashboard: which failure, which new task."""

    original_task_id = models.CharField(max_length=255, db_index=True)
    new_task_id = models.CharField(max_length=255, unique=True)
    task_name = models.CharField(max_length=255)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL)
    requested_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-requested_at"]


class SyncedSchedule(models.Model):
    """What ``sync_schedules`` last wrote for a topology schedule.

    The three-way merge compares topology, database and this record: a field
    the topology did not change since the last sync keeps the admin's edit.
    """

    name = models.CharField(max_length=200, unique=True)
    fields = models.JSONField(default=dict)
    synced_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.name


class AuditEntry(models.Model):
    """One operator action: who, when, what, from which address, and how it ended.

    Written by ``queueworks.ops.audit.audit_record`` for every start, cancel,
    re-run, bulk start, program control, dead-letter re-queue/discard and
    schedule edit, refusals included; read-only in the admin; deleted after
    ``OPS_AUDIT_RETENTION_DAYS`` by ``manage.py audit_prune`` (also run by
    beat's daily cleanup).
    """

    OK, REFUSED, FAILED = "ok", "refused", "failed"
    OUTCOMES = [(OK, "done"), (REFUSED, "refused"), (FAILED, "failed")]

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.SET_NULL, related_name="+")
    # Kept when the account is deleted later.
    username = models.CharField(max_length=150, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=40, db_index=True)
    target = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=10, choices=OUTCOMES)
    # HTTP status, new task ids, the error text...
    detail = models.JSONField(default=dict, blank=True)
    via = models.CharField(max_length=20, blank=True, help_text="api, dashboard, admin, command")

    class Meta:
        ordering = ["-at", "-id"]
        default_permissions = ("view",)
        verbose_name_plural = "audit entries"

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action} {self.target}: {self.outcome}"
