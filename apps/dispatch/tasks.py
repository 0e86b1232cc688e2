"""A task that does nothing: the unit of work of the throughput benchmark.

Routed to ``main_worker`` (acks late) like user-facing work, and it writes no
result, so the benchmark measures the worker and the broker, nothing else.
"""

from celery import shared_task


@shared_task(ignore_result=True)
def noop(n: int = 0) -> None:
    return None
