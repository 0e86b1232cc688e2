"""The project's settings with one guarantee switched off, for bench/main_lane.py only.

A benchmark variant runs ``main_worker`` with DJANGO_SETTINGS_MODULE pointing
here to price one feature; nothing deployed imports this module.
"""

import os

# The benchmark's task lives in the test-only app (apps/testing).
os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
os.environ.setdefault("DJANGO_PROFILE", "development")

from projectname.settings import *  # noqa: F401,F403
from projectname.settings import CELERY_TASK_ANNOTATIONS

if os.environ.get("BENCH_MAIN_ACKS_EARLY") == "1":
    # Acknowledged on receipt: a worker that dies loses the task.
    CELERY_TASK_ANNOTATIONS = {
        **CELERY_TASK_ANNOTATIONS,
        "apps.testing.tasks.noop": {"acks_late": False, "reject_on_worker_lost": False},
    }
