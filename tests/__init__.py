import os

# The example project's name, for the package's Django-free modules
# (queueworks/core/broker_access.py) while the settings module is another.
os.environ.setdefault("QUEUEWORKS_PROJECT_NAME", "projectname")
