from django.apps import AppConfig


class TestingConfig(AppConfig):
    """Test-only tasks: fault injection and the throughput benchmark's unit of work.

    Installed only with DJANGO_TEST_SUPPORT=1 (the test suite, the live test
    system, the benchmarks); the production profile refuses that flag, so a
    production worker never registers these tasks and nothing routes to them.
    """

    name = "apps.testing"
    label = "testing"
    verbose_name = "Test support (never in production)"

    def ready(self):
        from queueworks.tasks_backend import api

        from apps.testing import signals

        api.task_started.connect(signals.on_task_started, dispatch_uid="testing-task-started")
        api.task_finished.connect(signals.on_task_finished, dispatch_uid="testing-task-finished")
