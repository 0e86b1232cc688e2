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
            ("rerun_tasks", "Can re-run failed tasks"),
            ("requeue_dead_letters", "Can re-queue dead letters"),
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
