"""The project's settings with the processes test topology's queues declared,
for the programs of tests/queueworks/balancer/test_live_processes.py only."""

from projectname.settings import *  # noqa: F401,F403
from tests.queueworks.balancer.processes_topology import PROCESSES_TOPOLOGY

CELERY_TASK_QUEUES = PROCESSES_TOPOLOGY.celery_queues()
