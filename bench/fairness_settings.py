"""The project's settings with bench/fairness.py's lanes declared (Celery
refuses undeclared queues; the producer routes by the bench topology)."""

import os

os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
os.environ.setdefault("DJANGO_PROFILE", "development")

from projectname.settings import *  # noqa: F401,F403,E402
from bench.fairness_topology import TOPOLOGY  # noqa: E402

QUEUEWORKS_TOPOLOGY = "bench.fairness_topology:TOPOLOGY"
# Declared as the project's settings declare queues: quorum under
# TASK_QUEUE_TYPE=quorum (the 4.x node's default in the suite).
CELERY_TASK_QUEUES = TOPOLOGY.with_queue_type(QUEUEWORKS_TASK_QUEUE_TYPE).celery_queues()  # noqa: F405
