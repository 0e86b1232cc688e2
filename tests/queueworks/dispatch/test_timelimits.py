"""The solo pool's time limits (queueworks/dispatch/timelimits.py) with real SIGALRM signals."""

from __future__ import annotations

import signal
import time

import pytest
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from queueworks.dispatch import timelimits
from queueworks.dispatch.timelimits import TimeLimiter


# pytest-timeout's default method uses SIGALRM too.
pytestmark = pytest.mark.timeout(60, method="thread")


@pytest.fixture
def limiter():
    previous = signal.getsignal(signal.SIGALRM)
    yield TimeLimiter(grace=60)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def _busy(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def test_soft_then_hard_limit_raise_inside_the_task(limiter):
    with pytest.raises(SoftTimeLimitExceeded):
        limiter.run(lambda: _busy(2), 0.05, 1)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

    def ignores_soft():
        try:
            _busy(2)
        except SoftTimeLimitExceeded:
            _busy(2)

    with pytest.raises(TimeLimitExceeded):
        limiter.run(ignores_soft, 0.05, 0.1)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_an_alarm_that_fires_as_the_task_ends_is_ignored(limiter, monkeypatch):
    """The timer expires just as the task returns: the signal is delivered
    while ``run`` disarms the timer.  The task succeeded; nothing may be
    raised, and no timer may stay armed for the idle worker."""
    class LateAlarm:
        """The ``signal`` module, with the alarm delivered as the timer is disarmed."""

        def __getattr__(self, name):
            return getattr(signal, name)

        @staticmethod
        def setitimer(which, seconds, *interval):
            previous = signal.setitimer(which, seconds, *interval)
            if seconds == 0:
                signal.raise_signal(signal.SIGALRM)
            return previous

    monkeypatch.setattr(timelimits, "signal", LateAlarm())
    assert limiter.run(lambda: "done", 5, 10) == "done"
    monkeypatch.undo()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert limiter.run(lambda: "next", 5, 10) == "next"
