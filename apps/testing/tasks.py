"""Test-only tasks: the fault-injection harness's (bench/faults.py,
tests/integration/test_faults*.py) and the throughput benchmark's unit of work
(bench/throughput.py).  Registered only where apps.testing is installed."""

from __future__ import annotations

import os
import signal
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from queueworks.reliability.retry import PermanentError, TransientError, transient_retry
from queueworks.core.tasks import delivery_queue
from apps.testing.services import (
    fault_effect_apply,
    fault_execution_record,
    fault_executions_count,
)


class SoftTimeLimitReached(Exception):
    """A task stopped at its soft time limit after cleaning up."""


@shared_task(ignore_result=True)
def noop(n: int = 0) -> None:
    """Does nothing and writes no result: the benchmark measures worker and broker only."""
    return None


@shared_task(ignore_result=True, Strategy="celery.worker.strategy:default")
def noop_stock_strategy(n: int = 0) -> None:
    """``noop`` with Celery's default ``Task.Strategy`` instead of the project's
    (tests/queueworks/dispatch/test_lean_live.py: only the lean strategy runs inline)."""
    return None


@shared_task(bind=True, ignore_result=True)
def fault_effect(self, run_id: str, token: str, work_ms: int = 0) -> None:
    fault_execution_record(run_id=run_id, token=token)
    if work_ms:
        time.sleep(work_ms / 1000)
    fault_effect_apply(run_id=run_id, token=token, task_id=self.request.id)


@shared_task(bind=True, ignore_result=True)
def fault_effect_heavy(self, run_id: str, token: str, work_ms: int = 0) -> None:
    fault_execution_record(run_id=run_id, token=token)
    if work_ms:
        time.sleep(work_ms / 1000)
    fault_effect_apply(run_id=run_id, token=token, task_id=self.request.id)


@shared_task(bind=True)
def fault_sleep(self, run_id: str, token: str, seconds: float,
                ignore_soft_limit: bool = False) -> str:
    """Sleep, then apply the effect.  Its route has soft 2 s / hard 5 s limits.

    At the soft limit it cleans up and fails with a clear error, unless
    ``ignore_soft_limit`` (then the hard limit kills its pool process).
    """
    fault_execution_record(run_id=run_id, token=token)
    try:
        _sleep_under_limits(seconds, ignore_soft_limit)
    except SoftTimeLimitReached as stopped:
        # Clean-up point: nothing was applied, nothing is half-done.
        raise SoftTimeLimitReached(
            f"fault_sleep {token}: {stopped} of {seconds}s; nothing was applied") from None
    fault_effect_apply(run_id=run_id, token=token, task_id=self.request.id)
    return token


@shared_task(bind=True, ignore_result=False)
def fault_crash(self, run_id: str, token: str) -> None:
    """Kills its own pool process on every delivery (like an OOM kill)."""
    fault_execution_record(run_id=run_id, token=token)
    os._exit(137)


@shared_task(bind=True, **transient_retry(factor=1, maximum=4, max_retries=3))
def fault_flaky(self, run_id: str, token: str, failures: int = 0,
                permanent: bool = False) -> str:
    """Fails transiently ``failures`` times (then succeeds), or permanently."""
    fault_execution_record(run_id=run_id, token=token)
    if permanent:
        raise PermanentError(f"fault_flaky {token}: permanent failure, not retried")
    attempt = fault_executions_count(run_id=run_id, token=token)
    if attempt <= failures:
        raise TransientError(f"fault_flaky {token}: transient failure {attempt}/{failures}")
    fault_effect_apply(run_id=run_id, token=token, task_id=self.request.id)
    return token


@shared_task(bind=True, ignore_result=True)
def timed_sleep(self, ms: int, sent_at: float = 0.0, log: str = "") -> None:
    """Sleeps ``ms``; with ``log``, appends "task_id queue sent started finished"
    (epoch seconds) to that file: the balancer's benchmark and live tests read
    waits from it (one short O_APPEND write per task, whole lines)."""
    started = time.time()
    time.sleep(ms / 1000)
    if log:
        queue = delivery_queue(self.request)
        line = f"{self.request.id} {queue} {sent_at:.6f} {started:.6f} {time.time():.6f}\n"
        with open(log, "a", encoding="ascii") as handle:
            handle.write(line)


def _limit_log(log: str, event: str, key: str, task_id: str) -> None:
    """One line "event key task_id pid epoch" (O_APPEND, whole lines): the
    limits' live tests and benchmark read starts and ends from it."""
    if log:
        with open(log, "a", encoding="ascii") as handle:
            handle.write(f"{event} {key} {task_id} {os.getpid()} {time.time():.6f}\n")


def _limited_sleep(task, tenant_id: str, ms: int, log: str, stuck: bool = False) -> None:
    """Logs the start, sleeps ``ms``, logs the end: a run a sampler can see.
    ``stuck``: as a run stuck in C code (``_sleep_stuck``)."""
    _limit_log(log, "start", tenant_id, task.request.id)
    if stuck:
        _sleep_stuck(ms / 1000)
    else:
        time.sleep(ms / 1000)
    _limit_log(log, "end", tenant_id, task.request.id)


@shared_task(bind=True, ignore_result=True)
def limited_rate(self, tenant_id: str, log: str = "") -> None:
    """Rate-limited per ``tenant_id`` (its route): logs its start."""
    _limit_log(log, "start", tenant_id, self.request.id)


@shared_task(bind=True, ignore_result=True)
def limited_concurrency(self, tenant_id: str, ms: int = 0, log: str = "",
                        stuck: bool = False) -> None:
    """Concurrency-limited per ``tenant_id`` (its route): logs start and end."""
    _limited_sleep(self, tenant_id, ms, log, stuck)


# bench/limits.py's units of work, on the bulk lane (routes in projectname/topology.py).
@shared_task(bind=True, ignore_result=True)
def limits_bench_rate(self, tenant_id: str, log: str = "") -> None:
    """20 starts per second per tenant, burst 2."""
    _limit_log(log, "start", tenant_id, self.request.id)


@shared_task(bind=True, ignore_result=True)
def limits_bench_concurrency(self, tenant_id: str, ms: int = 0, log: str = "") -> None:
    """3 at once per tenant."""
    _limited_sleep(self, tenant_id, ms, log)


@shared_task(bind=True, ignore_result=True)
def limits_bench_plain(self, tenant_id: str, log: str = "") -> None:
    """No limit: the cost benchmark's baseline."""
    _limit_log(log, "start", tenant_id, self.request.id)


@shared_task(bind=True, ignore_result=True)
def limits_bench_limited(self, tenant_id: str, log: str = "") -> None:
    """``limits_bench_plain`` under a rate limit it never reaches (per tenant)."""
    _limit_log(log, "start", tenant_id, self.request.id)


@shared_task(bind=True)
def unique_job(self, tenant_id: str, run_id: str, seconds: float = 0,
               stuck: bool = False) -> str:
    """Unique by tenant_id (its route, tests/queueworks/limits): records each
    run (``FaultExecution``, token = tenant) and sleeps ``seconds``
    (``stuck``: as a run stuck in C code, ``_sleep_stuck``)."""
    fault_execution_record(run_id=run_id, token=tenant_id)
    if stuck:
        _sleep_stuck(seconds)
    elif seconds:
        time.sleep(seconds)
    return tenant_id


@shared_task(bind=True, ignore_result=True)
def fair_job(self, tenant_id: str, sent_at: float = 0.0, log: str = "", ms: int = 0) -> None:
    """Fair sharing's unit of work (bench/fairness.py, tests/queueworks/limits):
    sleeps ``ms``, then appends "task_id tenant sent started finished" (epoch
    seconds) to ``log`` (one short O_APPEND write per task, whole lines)."""
    started = time.time()
    if ms:
        time.sleep(ms / 1000)
    if log:
        line = f"{self.request.id} {tenant_id} {sent_at:.6f} {started:.6f} {time.time():.6f}\n"
        with open(log, "a", encoding="ascii") as handle:
            handle.write(line)


@shared_task(bind=True)
def unique_job_early_ack(self, tenant_id: str, run_id: str, seconds: float = 0) -> str:
    """``unique_job`` on a route that acks on receipt: a SIGKILLed run is
    never redelivered, so only its lease frees the key."""
    fault_execution_record(run_id=run_id, token=tenant_id)
    if seconds:
        time.sleep(seconds)
    return tenant_id


def _sleep_under_limits(seconds: float, ignore_soft_limit: bool) -> float:
    """Sleep ``seconds`` unless a time limit stops it; the seconds slept.

    At the soft limit: a clean failure naming the seconds it ran, unless
    ``ignore_soft_limit`` (then only the hard limit stops it)."""
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        except SoftTimeLimitExceeded:
            if ignore_soft_limit:
                continue
            raise SoftTimeLimitReached(
                f"stopped at the soft time limit after {time.monotonic() - started:.2f}s") from None
    return round(time.monotonic() - started, 2)


def _sleep_stuck(seconds: float) -> None:
    """Sleep ``seconds`` like a run stuck in C code: deaf to the soft limit and
    to SIGTERM (blocked), so on prefork only the SIGKILL at the hard limit
    ends it and nothing of the task's own code runs after that."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        _sleep_under_limits(seconds, ignore_soft_limit=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# One per lane, each routed with a hard limit (3 s) far below its worker's
# soft limit and no soft limit of its own (tests/queueworks/core/test_route_time_limits*.py).
@shared_task(bind=True)
def hard_limited_main(self, seconds: float, ignore_soft_limit: bool = False) -> float:
    return _sleep_under_limits(seconds, ignore_soft_limit)


@shared_task(bind=True)
def hard_limited_bulk(self, seconds: float, ignore_soft_limit: bool = False) -> float:
    return _sleep_under_limits(seconds, ignore_soft_limit)


@shared_task(bind=True)
def hard_limited_heavy(self, seconds: float, ignore_soft_limit: bool = False) -> float:
    return _sleep_under_limits(seconds, ignore_soft_limit)


@shared_task(bind=True)
def soft_limited_main(self, seconds: float, ignore_soft_limit: bool = False) -> float:
    """Routed with a soft limit (1 s) alone: the worker's hard limit stays."""
    return _sleep_under_limits(seconds, ignore_soft_limit)
