"""Exactly one beat, and no double office-hours run across beat restarts."""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab

from queueworks.reliability.beat import LOCK_QUEUE, BeatLock, LockedScheduler
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


def _office_hours_schedule():
    """The office-hours crontab on the test's clock (08:30 on a Monday)."""
    zone = ZoneInfo(str(app.timezone))
    Clock.when = datetime(2026, 11, 23, 8, 30, tzinfo=zone)  # a Monday
    app.conf.beat_schedule = {
        "office-hours-reminders": {
            "task": "apps.notifications.tasks.send_office_hours_reminders",
            "schedule": ClockedCrontab(minute=0, hour="8-17", day_of_week="mon-fri"),
            "options": {"queue": "main_worker", "routing_key": "main_worker"},
        },
    }
    return zone


def _recording_scheduler(lock_queue: str, on_send):
    class Recording(LockedScheduler):
        def apply_async(self, entry, producer=None, advance=True, **kwargs):
            on_send(Clock.when)  # and really publish it
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    Recording.lock_queue = lock_queue
    return Recording


@pytest.fixture
def office_hours(broker_vhost):
    """A beat schedule with the office-hours crontab on a controllable clock."""
    saved = app.conf.beat_schedule
    zone = _office_hours_schedule()
    yield Clock(), zone
    app.conf.beat_schedule = saved


def first_beat_main(schedule_filename: str, lock_queue: str) -> None:
    """A beat in a process of its own: sends the 09:00 and 10:00 slots, says
    so on stdout, then waits to be killed."""
    zone = _office_hours_schedule()
    scheduler = _recording_scheduler(lock_queue, lambda when: print(f"sent {when}", flush=True))(
        app=app, schedule_filename=schedule_filename)
    scheduler.tick()  # 08:30: takes the lock; the 09:00 slot is not due
    for hour in (9, 10):
        Clock.when = datetime(2026, 11, 23, hour, 0, 5, tzinfo=zone)
        scheduler.tick()
    print("holding the lock", flush=True)
    time.sleep(600)


def _spawn(code: str) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "projectname.settings",
           "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen([sys.executable, "-c", f"import django; django.setup(); {code}"],
                            env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _read_until(process: subprocess.Popen, last: str, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.strip() == last:
            return lines
    process.kill()
    raise AssertionError(f"child never printed {last!r}: {lines}\n{process.stderr.read()[-3000:]}")


def _kill_9(process: subprocess.Popen) -> None:
    """SIGKILL: no close(), no final sync; the kernel drops its connections."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def _wait_lock_free(lock_queue: str) -> None:
    probe = BeatLock(app, lock_queue)

    def free():
        taken = probe.acquire()
        probe.release()
        return taken

    wait_for(free, 30, interval=0.5, message=f"the killed holder's lock {lock_queue!r} to be freed")


@pytest.mark.live
def test_a_beat_killed_after_sending_does_not_send_the_same_slot_again(office_hours, tmp_path):
    clock, zone = office_hours
    lock_queue = f"test.beat.lock.{uuid.uuid4().hex[:8]}"
    schedule = str(tmp_path / "schedule")
    sent = []
    Recording = _recording_scheduler(lock_queue, sent.append)

    def start_beat():
        scheduler = Recording(app=app, schedule_filename=schedule)
        scheduler.tick()
        return scheduler

    first = _spawn("from tests.queueworks.reliability.test_beat import first_beat_main; "
                   f"first_beat_main({schedule!r}, {lock_queue!r})")
    try:
        lines = _read_until(first, "holding the lock")
    finally:
        _kill_9(first)  # right after the 10:00 send
    assert [line for line in lines if line.startswith("sent")] == [
        "sent 2026-11-23 09:00:05+01:00", "sent 2026-11-23 10:00:05+01:00"], lines
    _wait_lock_free(lock_queue)

    Clock.when = datetime(2026, 11, 23, 10, 0, 20, tzinfo=zone)
    second = start_beat()
    second.tick()
    assert sent == [], "the restarted beat sent the 10:00 slot again"
    second.lock.release()

    # Down from 10:00 to 13:30: the missed 11, 12 and 13 o'clock slots fire
    # once on restart (a catch-up), not three times.
    Clock.when = datetime(2026, 11, 23, 13, 30, tzinfo=zone)
    third = start_beat()
    third.tick()
    third.tick()
    assert len(sent) == 1
    third.close()


@pytest.mark.rabbitmq4
@pytest.mark.live
def test_the_lock_is_exclusive_and_freed_when_its_holder_goes(broker_vhost):
    queue = f"test.beat.lock.{uuid.uuid4().hex[:8]}"
    first, second = BeatLock(app, queue), BeatLock(app, queue)
    assert first.acquire() is True
    assert second.acquire() is False
    assert first.held()
    first.release()
    assert second.acquire() is True
    second.release()

    # A holder that dies without releasing (kill -9) frees the lock too.
    holder = _spawn("import time; from queueworks.reliability.beat import BeatLock; "
                    "from projectname.celery import app; "
                    f"print('held' if BeatLock(app, {queue!r}).acquire() else 'refused', flush=True); "
                    "time.sleep(600)")
    try:
        assert _read_until(holder, "held")[-1] == "held"
        assert second.acquire() is False
    finally:
        _kill_9(holder)
    _wait_lock_free(queue)


class _Connection:
    def __init__(self):
        self.released = False

    def release(self):
        self.released = True


def test_sigterm_during_a_tick_leaves_the_broker_connections_alone(tmp_path):
    """Beat's SIGTERM handler closes the scheduler from inside a tick (here:
    mid-publish); the interrupted connections are not used again, so beat
    exits instead of waiting forever for the rest of a half-read frame."""
    stopped = {}

    class Interrupted(LockedScheduler):
        def apply_async(self, entry, producer=None, advance=True, **kwargs):
            self.close()  # what celery/apps/beat.py's SIGTERM handler does
            raise SystemExit()

    scheduler = Interrupted(app=app, schedule_filename=str(tmp_path / "schedule"))
    producer_connection, lock_connection = _Connection(), _Connection()
    scheduler.__dict__.update(connection=producer_connection, producer=object())
    scheduler.lock = BeatLock(app, "test.beat.lock.unused")
    scheduler.lock.connection, scheduler.lock.channel = lock_connection, None
    scheduler.lock.held = lambda: True
    scheduler.schedule["due"] = scheduler.Entry(
        name="due", task="queueworks.core.tasks.probe", schedule=crontab(), app=app,
        last_run_at=datetime(2020, 1, 1, tzinfo=ZoneInfo("UTC")))
    with pytest.raises(SystemExit):
        scheduler.tick()
    stopped.update(producer=producer_connection.released, lock=lock_connection.released)
    scheduler.close()  # beat's own close after the handler: nothing left to release

    assert stopped == {"producer": False, "lock": False}
    assert scheduler.lock.connection is None and "connection" not in scheduler.__dict__


def start_beat(live_system, directory, *extra):
    log = directory / "beat.log"
    process = subprocess.Popen(
        [live_system.bin("celery"), "-A", "projectname", "beat", "--loglevel=INFO",
         f"--schedule={directory / 'schedule'}", f"--pidfile={directory / 'beat.pid'}", *extra],
        env=live_system.env, cwd=PROJECT_ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )
    return process, log


@pytest.mark.rabbitmq4
@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_second_beat_started_by_mistake_stands_by(live_system, tmp_path):
    (tmp_path / "configured").mkdir()
    (tmp_path / "file").mkdir()
    # The configured scheduler (settings.CELERY_BEAT_SCHEDULER) and the
    # file-based LockedScheduler, both while supervisor's beat holds the lock.
    configured, configured_log = start_beat(live_system, tmp_path / "configured")
    locked, locked_log = start_beat(live_system, tmp_path / "file",
                                    "--scheduler=queueworks.reliability.beat:LockedScheduler")
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
