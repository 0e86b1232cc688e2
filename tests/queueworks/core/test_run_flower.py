from queueworks.core.events import declines_task_events


def test_flower_leaves_task_events_to_each_workers_declaration(settings, monkeypatch):
    """Flower asks for task events as it always does; the workers decide."""
    from django.core.management import call_command

    served = []
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "user:password")
    monkeypatch.setattr("queueworks.core.flower.serve", lambda app, argv: served.append(argv))
    settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_USER = settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_PASSWORD = ""
    call_command("run_flower", "--port=1")
    assert served and not [arg for arg in served[0] if arg.startswith("--enable_events")]


def test_only_a_worker_declared_without_events_and_without_a_lease_declines():
    assert declines_task_events(lease=0, declared=False)
    assert not declines_task_events(lease=30, declared=False)
    assert not declines_task_events(lease=0, declared=True)


def _served_argv(settings, monkeypatch, *args):
    from django.core.management import call_command

    served = []
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "user:password")
    monkeypatch.setattr("queueworks.core.flower.serve", lambda app, argv: served.append(argv))
    settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_USER = settings.QUEUEWORKS_RABBITMQ_MANAGEMENT_PASSWORD = ""
    call_command("run_flower", "--port=1", *args)
    return served[0]


def test_flower_keeps_the_settings_number_of_tasks(settings, monkeypatch):
    from queueworks.conf import DEFAULTS

    assert "--max_tasks=2000" in _served_argv(settings, monkeypatch)
    assert DEFAULTS["FLOWER_MAX_TASKS"] == 2_000
    settings.QUEUEWORKS_FLOWER_MAX_TASKS = 2500
    assert "--max_tasks=2500" in _served_argv(settings, monkeypatch)
    assert "--max_tasks=7" in _served_argv(settings, monkeypatch, "--max-tasks=7")


def test_a_bad_max_tasks_is_a_clear_error(settings, monkeypatch):
    import pytest
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--max-tasks"):
        _served_argv(settings, monkeypatch, "--max-tasks=0")
