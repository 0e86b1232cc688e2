"""Retry policy: transient errors back off exponentially with jitter up to a
maximum and show RETRY; permanent errors fail at once; exhausted retries are
recorded as FAILURE and dead-lettered."""

import random
import time
import uuid

import pytest

from queueworks.reliability.models import Effect
from apps.testing.models import FaultExecution
from queueworks.reliability.retry import (
    TRANSIENT_ERRORS,
    PermanentError,
    TransientError,
    backoff_ceiling,
    backoff_delay,
    transient_retry,
)
from queueworks.reliability.services import dead_letters_list
from apps.testing.services import fault_account_open
from apps.testing.tasks import fault_flaky


def test_backoff_grows_exponentially_up_to_the_maximum():
    assert [backoff_ceiling(retries=n, factor=2, maximum=60) for n in range(7)] == [
        2, 4, 8, 16, 32, 60, 60]


def test_backoff_jitter_stays_between_half_and_the_full_ceiling():
    rng = random.Random(5)
    for retries in range(10):
        ceiling = backoff_ceiling(retries=retries, factor=2, maximum=300)
        delays = [backoff_delay(retries=retries, factor=2, maximum=300, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        # Jitter: not one fixed value (retries of tasks that failed together spread out).
        assert max(delays) - min(delays) > ceiling / 4


def test_policy_options_name_the_transient_errors_and_limits():
    options = transient_retry(factor=3, maximum=30, max_retries=4)
    assert options == {"transient_errors": TRANSIENT_ERRORS, "backoff_factor": 3,
                       "backoff_max": 30, "max_retries": 4}
    assert TransientError in TRANSIENT_ERRORS and ConnectionError in TRANSIENT_ERRORS
    assert PermanentError not in TRANSIENT_ERRORS


def _states_until_ready(result, timeout=60):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = result.state
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in ("SUCCESS", "FAILURE"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"task not finished after {timeout}s; states {seen}")


@pytest.mark.live
@pytest.mark.rabbitmq4
@pytest.mark.django_db(transaction=True)
class TestThroughAWorker:
    def test_transient_failures_retry_visibly_then_succeed(self, live_system):
        run = uuid.uuid4().hex[:12]
        fault_account_open(run_id=run)
        started = time.monotonic()
        result = fault_flaky.delay(run, "flaky", failures=2)
        states = _states_until_ready(result)

        assert states[-1] == "SUCCESS", states
        assert "RETRY" in states
        assert FaultExecution.objects.filter(run_id=run).count() == 3
        assert Effect.objects.filter(key=f"fault:{run}:flaky").count() == 1
        # Backoff factor 1: at least 0.5 s + 1 s of waiting before the third run.
        assert time.monotonic() - started >= 1.5

    def test_permanent_failure_is_not_retried(self, live_system):
        run = uuid.uuid4().hex[:12]
        fault_account_open(run_id=run)
        result = fault_flaky.delay(run, "permanent", permanent=True)
        states = _states_until_ready(result)

        assert states[-1] == "FAILURE" and "RETRY" not in states
        assert isinstance(result.result, PermanentError)
        assert FaultExecution.objects.filter(run_id=run).count() == 1

    def test_exhausted_retries_fail_and_are_dead_lettered(self, live_system):
        run = uuid.uuid4().hex[:12]
        fault_account_open(run_id=run)
        result = fault_flaky.delay(run, "hopeless", failures=99)
        states = _states_until_ready(result)

        assert states[-1] == "FAILURE"
        assert "still failing after 3 retries" in str(result.result)
        assert FaultExecution.objects.filter(run_id=run).count() == 4  # 1 + max_retries
        letters = {letter.id: letter for letter in dead_letters_list(limit=1000)}
        assert result.id in letters
        assert letters[result.id].queue == "main_worker"
        assert letters[result.id].reason == "rejected"


@pytest.mark.parametrize("delay", [
    {"countdown": 0.4},
    {"eta_in": 0.3},
])
def test_a_sub_second_delay_is_published_as_at_least_one_second(monkeypatch, delay):
    """A backoff of factor 1 retries after 0.5-1 s.  On quorum queues Celery's
    native delayed delivery routes by whole seconds and refuses a countdown
    that rounds to 0 ("countdown must be a positive number"): the retry was
    then rejected and the task dead-lettered after its first run."""
    from datetime import datetime, timedelta, timezone

    sent = {}
    monkeypatch.setattr(fault_flaky.app, "send_task", lambda *args, **kwargs: sent.update(kwargs))
    options = dict(delay)
    if "eta_in" in options:
        options["eta"] = datetime.now(timezone.utc) + timedelta(seconds=options.pop("eta_in"))
    fault_flaky.apply_async(("run", "token"), **options)
    if sent.get("countdown") is not None:
        assert sent["countdown"] >= 1
    else:
        assert sent["eta"] - datetime.now(timezone.utc) > timedelta(seconds=0.9)
