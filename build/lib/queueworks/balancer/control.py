"""``balancer_pool_grow``: Celery's ``pool_grow``, with the processes forked now.

Celery's prefork ``pool_grow`` only raises the pool's process target; the
pool forks the new processes when it next maintains itself, on a timer of
5 seconds, so a grow reaches a burst up to 5 s late.  This command runs
Celery's own ``pool_grow`` (the same refusal next to an autoscaler, the same
prefetch change) and then asks the pool to maintain itself at once, which is
what that timer does.  Registered through
``celery.worker.control.control_command`` (the documented way to add remote
control commands); every worker imports it with the Celery app
(projectname/celery.py).
"""

from __future__ import annotations

from celery.worker import control

COMMAND = "balancer_pool_grow"


@control.control_command(name=COMMAND, args=[("n", int)], signature="[N=1]")
def balancer_pool_grow(state, n=1, **kwargs):
    """Grow pool by n processes and start them now."""
    answer = control.pool_grow(state, n=n, **kwargs)
    if "ok" in answer:
        # The prefork TaskPool's maintain_pool forks up to the new target
        # (the other pools' is a no-op).
        state.consumer.pool.maintain_pool()
    return answer
