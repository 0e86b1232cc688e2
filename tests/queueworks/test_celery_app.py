"""What queueworks.celery_app.install gives a worker's logging."""

import logging

from queueworks.celery_app import TASK_LOGGERS, use_django_logging


def test_the_workers_log_level_applies_to_django_task_lines_too():
    # The bulk lane runs at WARNING: no INFO line per @task start and finish.
    use_django_logging(loglevel="WARNING")
    assert {name: logging.getLogger(name).level for name in TASK_LOGGERS} == {
        "celery": logging.WARNING, "django.tasks": logging.WARNING,
        "django_tasks": logging.WARNING}
    use_django_logging(loglevel="INFO")
    assert logging.getLogger("django_tasks").level == logging.INFO
