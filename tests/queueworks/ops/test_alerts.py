"""Wait-time alerts: once per incident, through every configured channel."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from queueworks.ops.broker import QueueStats
from queueworks.ops.models import AlertIncident
from queueworks.ops.services import alerts_evaluate

pytestmark = pytest.mark.django_db

SENT = []


class RecordingChannel:
    """A third channel, to show the list is pluggable."""

    def send(self, incident, message):
        SENT.append((incident.queue, incident.kind, message))


@pytest.fixture(autouse=True)
def channels(settings):
    SENT.clear()
    settings.QUEUEWORKS_OPS_ALERT_CHANNELS = ["queueworks.ops.alerts.LogChannel", "queueworks.ops.alerts.EmailChannel",
                                   "tests.queueworks.ops.test_alerts.RecordingChannel"]
    settings.QUEUEWORKS_OPERATOR_EMAILS = ["ops@example.com"]
    settings.QUEUEWORKS_OPS_NO_CONSUMER_GRACE_SECONDS = 30


def _stats(**main_worker):
    base = {"name": "main_worker", "exists": True, "ready": 0, "unacked": 0, "consumers": 1}
    return {
        "main_worker": QueueStats(**{**base, **main_worker}),
        "heavy": QueueStats(name="heavy", exists=True, consumers=1),
        "celery": QueueStats(name="celery", exists=True, consumers=1),
    }


def test_a_long_wait_alerts_once_per_incident(caplog):
    now = timezone.now()
    # Below main_worker's threshold (60 s, declared in the topology): nothing.
    assert alerts_evaluate(stats=_stats(ready=3, oldest_wait=59), now=now) == []
    assert mail.outbox == []

    open_ = alerts_evaluate(stats=_stats(ready=3, oldest_wait=61), now=now)
    assert [(i.queue, i.kind) for i in open_] == [("main_worker", "wait")]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert "main_worker" in mail.outbox[0].subject
    assert "waited 61 s (threshold 60 s)" in mail.outbox[0].body
    assert "queue alert: queue main_worker" in caplog.text
    assert SENT == [("main_worker", "wait", open_[0].detail)]

    # Every later refresh of the same incident: no new message.
    for seconds in (10, 20, 30):
        alerts_evaluate(stats=_stats(ready=5, oldest_wait=61 + seconds),
                        now=now + timedelta(seconds=seconds))
    assert len(mail.outbox) == 1 and len(SENT) == 1
    assert AlertIncident.objects.get().peak == 91

    # The queue drains: the incident closes, with one recovery message.
    assert alerts_evaluate(stats=_stats(ready=0), now=now + timedelta(seconds=40)) == []
    assert AlertIncident.objects.get().closed_at is not None
    assert len(mail.outbox) == 2 and mail.outbox[1].subject.startswith("[ops] RESOLVED queue main_worker")
    assert SENT[1][2].startswith("RESOLVED: queue main_worker") and "cleared after 40 s" in SENT[1][2]
    alerts_evaluate(stats=_stats(ready=0), now=now + timedelta(seconds=45))
    assert len(mail.outbox) == 2
    # A new crossing is a new incident.
    alerts_evaluate(stats=_stats(ready=1, oldest_wait=75), now=now + timedelta(seconds=50))
    assert len(mail.outbox) == 3
    assert AlertIncident.objects.count() == 2


def test_work_without_a_consumer_alerts_after_the_grace_period():
    now = timezone.now()
    open_ = alerts_evaluate(stats=_stats(ready=2, consumers=0), now=now)
    assert [(i.queue, i.kind, i.notified_at) for i in open_] == [("main_worker", "no_consumer", None)]
    assert mail.outbox == []  # a restart blip is not worth an e-mail
    alerts_evaluate(stats=_stats(ready=2, consumers=0), now=now + timedelta(seconds=31))
    assert len(mail.outbox) == 1
    assert "2 message(s) waiting and no consumer" in mail.outbox[0].body
    alerts_evaluate(stats=_stats(ready=2, consumers=0), now=now + timedelta(seconds=60))
    assert len(mail.outbox) == 1


def test_a_broken_channel_does_not_silence_the_others(settings):
    settings.QUEUEWORKS_OPS_ALERT_CHANNELS = ["tests.queueworks.ops.test_alerts.BrokenChannel",
                                   "queueworks.ops.alerts.EmailChannel"]
    alerts_evaluate(stats=_stats(ready=1, oldest_wait=600), now=timezone.now())
    assert len(mail.outbox) == 1


class BrokenChannel:
    def send(self, incident, message):
        raise ConnectionError("pager service down")


def test_a_crash_loop_alerts_once_with_its_error_and_recovers():
    from queueworks.ops.programs import ProgramState

    def programs(state, error=""):
        return {"main_worker": ProgramState("main_worker", state, 0, "", error),
                "beat": ProgramState("beat", "RUNNING", 1, "")}

    now = timezone.now()
    error = "amqp.exceptions.PreconditionFailed: Queue.declare: (406) PRECONDITION_FAILED"
    for seconds in (0, 60):
        open_ = alerts_evaluate(stats=_stats(), now=now + timedelta(seconds=seconds),
                                programs=programs("BACKOFF", error))
        assert [(i.queue, i.kind) for i in open_] == [("main_worker", "crash_loop")]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "[ops] program main_worker: program keeps crashing"
    assert error in mail.outbox[0].body
    # Starting again, or supervisord unreachable (programs=None): not recovered.
    assert alerts_evaluate(stats=_stats(), now=now + timedelta(seconds=80),
                           programs=programs("STARTING")) != []
    assert alerts_evaluate(stats=_stats(), now=now + timedelta(seconds=90)) != []
    alerts_evaluate(stats=_stats(), now=now + timedelta(seconds=120), programs=programs("RUNNING"))
    assert len(mail.outbox) == 2 and "RESOLVED" in mail.outbox[1].subject
