"""The project's settings with the balancer test topology's queues declared,
for the programs of tests/queueworks/balancer/test_live_balancer.py only (Celery
refuses a queue its settings do not declare: task_create_missing_queues off)."""

from projectname.settings import *  # noqa: F401,F403
from tests.queueworks.balancer.topology import BALANCED_TOPOLOGY

CELERY_TASK_QUEUES = BALANCED_TOPOLOGY.celery_queues()
