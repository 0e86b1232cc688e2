import os

# The example project's name, for the package's Django-free modules
# (queueworks/core/broker_access.py) while the settings module is another.
os.environ.setdefault("QUEUEWORKS_PROJECT_NAME", "projectname")
# The benchmarks' units of work are the test-only app's tasks (apps/testing),
# routed only with test support on: on before the topology is first imported.
os.environ.setdefault("DJANGO_TEST_SUPPORT", "1")
