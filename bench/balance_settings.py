"""The project's settings with bench/balance.py's lanes declared, for the
programs that benchmark starts only (Celery refuses undeclared queues)."""

import os

os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
os.environ.setdefault("DJANGO_PROFILE", "development")

from projectname.settings import *  # noqa: F401,F403,E402
from bench.balance_topology import TOPOLOGY  # noqa: E402

CELERY_TASK_QUEUES = TOPOLOGY.celery_queues()
