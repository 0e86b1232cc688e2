"""Exactly one beat, and no double office-hours run across beat restarts."""

import subprocess
import sys
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab

from apps.reliability.beat import LOCK_QUEUE, BeatLock, LockedScheduler
from projectname.celery import app
from tests.support.live import PROJECT_ROOT, wait_for


class Clock:
    when = None

    def __call__(self):
        return Clock.when


class ClockedCrontab(crontab):
    """A crontab on the test's clock (survives the schedule file's pickling)."""

    def now(self):
        return Clock.when


@pytest.fixture
def office_hours(broker_vhost):
    """A beat schedule with the office-hours crontab on a controllable clock."""
    zone = ZoneInfo(str(app.timezone))
    clock = Clock()
    Clock.when = datetime(2026, 11, 23, 8, 30, tzinfo=zone)  # a Monday
    saved = app.conf.beat_schedule
    app.conf.beat_schedule = {
        "office-hours-reminders": {
            "task": "apps.notifications.tasks.send_office_hours_reminders",
            "schedule": ClockedCrontab(minute=0, hour="8-17", day_of_week="mon-fri"),
            "options": {"queue": "main_worker", "routing_key": "main_worker"},
        },
    }
    yield clock, zone
    app.conf.beat_schedule = saved


def test_a_beat_killed_after_sending_does_not_send_the_same_slot_again(office_hours, tmp_path):
    clock, zone = office_hours
    sent = []

    class Recording(LockedScheduler):
        lock_queue = f"test.beat.lock.{uuid.uuid4().hex[:8]}"

        def apply_async(self, entry, producer=None, advance=True, **kwargs):
            sent.append(clock())  # and really publish it
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def start_beat():
        scheduler = Recording(app=app, schedule_filename=str(tmp_path / "schedule"))
        scheduler.tick()
        return scheduler

    first = start_beat()
    assert sent == []  # 08:30: the 09:00 slot is not due
    Clock.when = datetime(2026, 11, 23, 9, 0, 5, tzinfo=zone)
    first.tick()
    Clock.when = datetime(2026, 11, 23, 10, 0, 5, tzinfo=zone)
    first.tick()
    assert len(sent) == 2
    # kill -9 right after the 10:00 send: no close(), no final sync; the lock
    # connection just dies.
    first.lock.release()

    Clock.when = datetime(2026, 11, 23, 10, 0, 20, tzinfo=zone)
    second = start_beat()
    second.tick()
    assert len(sent) == 2, "the restarted beat sent the 10:00 slot again"
    second.lock.release()

    # Down from 10:00 to 13:30: the missed 11, 12 and 13 o'clock slots fire
    # once on restart (a catch-up), not three times.
    Clock.when = datetime(2026, 11, 23, 13, 30, tzinfo=zone)
    third = start_beat()
    third.tick()
    third.tick()
    assert len(sent) == 3
    third.close()


def test_the_lock_is_exclusive_and_freed_when_its_holder_goes(broker_vhost):
    queue = f"test.beat.lock.{uuid.uuid4().hex[:8]}"
    first, second = BeatLock(app, queue), BeatLock(app, queue)
    assert first.acquire() is True
    assert second.acquire() is False
    assert first.held()
    first.release()
    assert second.acquire() is True
    second.release()


def start_beat(live_system, directory, *extra):
    log = directory / "beat.log"
    process = subprocess.Popen(
        [live_system.bin("celery"), "-A", "projectname", "beat", "--loglevel=INFO",
         f"--schedule={directory / 'schedule'}", f"--pidfile={directory / 'beat.pid'}", *extra],
        env=live_system.env, cwd=PROJECT_ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )
    return process, log


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_second_beat_started_by_mistake_stands_by(live_system, tmp_path):
    (tmp_path / "configured").mkdir()
    (tmp_path / "file").mkdir()
    # The configured scheduler (settings.CELERY_BEAT_SCHEDULER) and the
    # file-based LockedScheduler, both while supervisor's beat holds the lock.
    configured, configured_log = start_beat(live_system, tmp_path / "configured")
    locked, locked_log = start_beat(live_system, tmp_path / "file",
                                    "--scheduler=apps.reliability.beat:LockedScheduler")
    try:
        for log in (configured_log, locked_log):
            wait_for(lambda: "standing by" in log.read_text(errors="replace"), 60,
                     message=f"a second beat to stand by ({log})")
        for process, log in ((configured, configured_log), (locked, locked_log)):
            text = log.read_text(errors="replace")
            assert LOCK_QUEUE in text
            assert "Sending due task" not in text
            assert process.poll() is None  # a hot standby, not a crash loop
        assert "Beat lock acquired" in live_system.log_tail("beat", 400)
        # A standby beat stops promptly on SIGTERM (supervisorctl stop).
        locked.terminate()
        locked.wait(timeout=30)
    finally:
        for process in (configured, locked):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    assert live_system.states()["beat"] == "RUNNING"
