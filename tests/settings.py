"""The test suite's settings: the project's, in the development profile, with
the test-only app (apps/testing) installed.

Set in the environment before the project's settings load, so every process
the suite starts (workers, beat, Flower, manage.py) inherits the same choice.
"""

import os

os.environ.setdefault("DJANGO_PROFILE", "development")
os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")

# QUEUEWORKS_TEST_BROKER=rabbitmq4: the 4.x pass (tests/support/rabbitmq4.py).
from tests.support.rabbitmq4 import apply_test_broker  # noqa: E402

apply_test_broker()

# QUEUEWORKS_TEST_DATABASE=postgres: the PostgreSQL pass (tests/support/postgres.py).
from tests.support.postgres import apply_test_database  # noqa: E402

apply_test_database()

from projectname.settings import *  # noqa: E402,F403
