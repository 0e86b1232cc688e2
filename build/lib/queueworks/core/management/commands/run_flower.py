import os
from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from queueworks.core import cpu_policy
from queueworks.conf import settings as queueworks_settings
from queueworks.conf import project_root

# Flower writes its in-memory state (task events) to its --db file this often
# (ms), not only at shutdown, so a crash loses at most a minute of it.
STATE_SAVE_INTERVAL_MS = 60_000


def broker_api_url() -> tuple[str, dict[str, str]]:
    """Flower's --broker_api (RabbitMQ's management API) and extra environment.

    Flower takes the API's credentials from the URL, else from the broker URL.
    Credentials that differ from the broker's go in FLOWER_BROKER_API (the
    environment) rather than on the command line, where `ps` would show them.
    """
    from queueworks.ops.broker import management_api

    api = management_api()
    url = f"{api.url}/api/"
    if queueworks_settings.RABBITMQ_MANAGEMENT_USER or queueworks_settings.RABBITMQ_MANAGEMENT_PASSWORD:
        scheme, rest = url.split("://", 1)
        secret = f"{scheme}://{quote(api.user, safe='')}:{quote(api.password, safe='')}@{rest}"
        return "", {"FLOWER_BROKER_API": secret}
    return url, {}


class Command(BaseCommand):
    help = ("Start Flower on 127.0.0.1 behind Basic auth (FLOWER_BASIC_AUTH=user:password), "
            "with persistent state and RabbitMQ's management API for queue lengths; it starts "
            "allowlisted tasks only and refuses worker control (queueworks/core/flower.py).")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=5555)
        parser.add_argument(
            "--max-tasks", type=int, default=None,
            help="tasks Flower keeps in memory and in its saved state (default: the "
                 "QUEUEWORKS_FLOWER_MAX_TASKS setting)")

    def handle(self, *args, port: int, max_tasks: int | None = None, **options):
        max_tasks = queueworks_settings.FLOWER_MAX_TASKS if max_tasks is None else max_tasks
        if not isinstance(max_tasks, int) or max_tasks < 1:
            raise CommandError(f"--max-tasks (QUEUEWORKS_FLOWER_MAX_TASKS) must be a positive "
                               f"integer, not {max_tasks!r}.")
        credentials = os.environ.get("FLOWER_BASIC_AUTH", "")
        if ":" not in credentials and not settings.DEBUG:
            raise CommandError(
                "FLOWER_BASIC_AUTH is not set (expected user:password); "
                "Flower will not run without authentication outside DEBUG."
            )
        run_dir = os.environ.get("RUN_DIR", str(project_root() / "run"))
        argv = ["--address=127.0.0.1", f"--port={port}", "--persistent=True",
                f"--db={run_dir}/flower.db", f"--state_save_interval={STATE_SAVE_INTERVAL_MS}",
                # Bounds memory and the saved state: a restart loads the saved
                # state back, trimmed to this many tasks.
                f"--max_tasks={max_tasks}"]
        # Flower asks every worker for task events every few seconds: a
        # worker with a task-events lease sends them while Flower runs; one
        # whose program declares none (the bulk lane) declines
        # (queueworks/core/events.py), so it stays on its fast path.
        api_url, api_env = broker_api_url()
        if api_url:
            argv.append(f"--broker_api={api_url}")
        os.environ.update(api_env)
        # The CPU policy its program declares (queueworks/core/cpu_policy.py).
        try:
            cpu_policy.apply_from_environment()
        except cpu_policy.UnknownPolicy as error:
            raise CommandError(str(error)) from None
        # Flower runs in this process (not `celery flower`) so its start and
        # control endpoints can be limited (queueworks/core/flower.py).  It reads
        # FLOWER_BASIC_AUTH from the environment itself, so the password never
        # appears in `ps`.
        from queueworks.core.flower import serve
        from queueworks.conf import celery_app
        app = celery_app()

        serve(app, argv)
