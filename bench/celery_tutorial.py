"""Celery exactly as its tutorial sets it up (the baseline of bench/throughput.py).

Defaults everywhere: prefork pool with one process per core, prefetch x4,
acks early, no result backend.  The broker URL comes from BENCH_BROKER_URL.
"""

import os

from celery import Celery

app = Celery("tutorial", broker=os.environ.get("BENCH_BROKER_URL", "pyamqp://guest@127.0.0.1//"))


@app.task
def noop(n=0):
    return None
