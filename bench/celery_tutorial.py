"""Celery exactly as its tutorial sets it up (the baseline of bench/throughput.py).

Defaults everywhere: prefork pool with one process per core, prefetch x4,
acks early, no result backend.  The broker URL comes from BENCH_BROKER_URL
(bench/throughput_systems.py sets it to a throw-away vhost; there is no default user).
"""

import os

from celery import Celery

if not os.environ.get("BENCH_BROKER_URL"):
    raise RuntimeError("BENCH_BROKER_URL is not set: run the tutorial app through bench/throughput.py")
app = Celery("tutorial", broker=os.environ["BENCH_BROKER_URL"])


@app.task
def noop(n=0):
    return None
