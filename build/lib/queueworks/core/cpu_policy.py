"""The Linux CPU scheduling policy a worker program runs under.

Linux lets a task that wakes up preempt the one running, and a worker wakes
up for every message (prefork parent, pool child, the broker connection), so
on a host shared with the web server a request's code is descheduled part way
more often the busier the workers are.  ``nice`` does not stop that: a woken
task's head start is counted in virtual time, the same at any nice level.
What does is the scheduling *policy* (``sched(7)``):

* ``normal`` (SCHED_OTHER): the default, and what user-facing lanes run under;
* ``batch`` (SCHED_BATCH): a fair share of the CPU as under ``normal``, but
  the process never preempts another on waking up (the bulk lane);
* ``idle`` (SCHED_IDLE): it runs only when nothing else wants the core.  Any
  busy process of normal priority (a cron job, a backup) then takes nearly
  all of it: a probe through the Task API took seconds instead of 0.2 s.
  An opt-in for work that may wait indefinitely.

Each worker program declares its policy in ``projectname/topology.py``
(``Worker.cpu_policy``); the rendered program files pass any other than
``normal`` as ``CPU_SCHEDULING_POLICY`` and the worker's main process applies
it before it starts its pool (children and threads inherit it).  Lowering a
process's policy needs no privileges.  Measured in bench/cpu_policy.py and
bench/latency.py (docs/performance-main-lane.md).
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "CPU_SCHEDULING_POLICY"
# Keys: projectname.topology.CPU_POLICIES (a test keeps them equal).
POLICIES = {
    "normal": getattr(os, "SCHED_OTHER", None),
    "batch": getattr(os, "SCHED_BATCH", None),
    "idle": getattr(os, "SCHED_IDLE", None),
}


class UnknownPolicy(ValueError):
    pass


def apply(name: str) -> bool:
    """Give this process (every thread it has now) the policy ``name``.

    False where the platform has no such policy (not Linux): it runs as before.
    """
    if name not in POLICIES:
        raise UnknownPolicy(f"{ENVIRONMENT_VARIABLE}={name!r}: expected one of "
                            f"{', '.join(POLICIES)}")
    policy = POLICIES[name]
    if policy is None or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(0))
        except ProcessLookupError:  # a thread that just ended
            continue
    return True


def apply_from_environment() -> str | None:
    """Apply ``$CPU_SCHEDULING_POLICY`` if set; the name applied, else None."""
    name = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if not name:
        return None
    if not apply(name):
        logger.warning("%s=%s is not supported on this platform; running with the default "
                       "policy.", ENVIRONMENT_VARIABLE, name)
        return None
    return name


def on_worker_init(**_kwargs) -> None:
    """``celeryd_init`` hook: before the worker starts its pool and threads.

    A value nobody rendered (the topology refuses unknown names) is reported
    by name and the worker runs with the default policy rather than not at all.
    """
    try:
        applied = apply_from_environment()
    except UnknownPolicy as error:
        logger.error("%s; running with the default policy.", error)
        return
    if applied:
        logger.info("CPU scheduling policy: %s", applied)
