from django.db import models


class BeatHeartbeat(models.Model):
    """Heartbeats beat sends (every BEAT_HEARTBEAT_SECONDS), one row per sender.

    ``origin`` is the ``<pid>@<host>`` of the process that published the
    message, so two beats running at once on one broker show up as two rows
    whose [first_seen, last_seen] overlap.
    """

    origin = models.CharField(max_length=255)
    # host:port/vhost of the broker it came through: one beat per broker.
    broker = models.CharField(max_length=255, default="")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    beats = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["origin", "broker"],
                                               name="doctor_heartbeat_origin_broker")]

    def __str__(self):
        return f"{self.origin}: {self.beats} beat(s), last {self.last_seen}"
