from django.core.management import call_command


def test_flower_leaves_each_workers_task_events_as_its_program_declares(settings, monkeypatch):
    """Flower's default turns task events on in every worker every few
    seconds, which would take the bulk lane off its fast path."""
    launched = []
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "user:password")
    monkeypatch.setattr("os.execvp", lambda program, argv: launched.append(argv))
    settings.RABBITMQ_MANAGEMENT_USER = settings.RABBITMQ_MANAGEMENT_PASSWORD = ""
    call_command("run_flower", "--port=1")
    assert launched and "--enable_events=False" in launched[0]


def test_flower_knows_the_option_and_defaults_it_on():
    from flower.options import options

    assert options.enable_events is True  # hence the explicit False
