"""System checks: eager mode never with DEBUG off; RabbitMQ-only guarantees on Redis."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from queueworks.doctor.broker import rabbitmq_only_guarantees
from queueworks.conf import TOPOLOGY


def eager_errors(*, eager: bool, debug: bool) -> list[Error]:
    if eager and not debug:
        return [Error(
            "CELERY_EAGER is on with DEBUG off: every task would run inline in the web "
            "request, without the broker, the workers, retries or time limits.",
            hint="Unset CELERY_EAGER (or set CELERY_EAGER=0) in production; it is for "
                 "local development and unit tests only.",
            id="doctor.E001",
        )]
    return []


@register(Tags.compatibility, "modes")
def eager_mode_check(app_configs=None, **kwargs):
    return eager_errors(eager=bool(getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)),
                        debug=settings.DEBUG)


@register(Tags.compatibility, "broker")
def redis_guarantees_check(app_configs=None, **kwargs):
    return [
        Warning(f"Redis broker: {text}", id="doctor.W001",
                hint="See docs/redis.md; use RabbitMQ where this guarantee matters.")
        for text in rabbitmq_only_guarantees(
            broker_url=settings.CELERY_BROKER_URL, topology=TOPOLOGY,
            transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None),
        )
    ]


READERS_OF_DJANGO_DB_RESULTS = ("queueworks.taskapi", "queueworks.ops")


def results_backend_warnings(*, result_backend: str, installed: list[str]) -> list[Warning]:
    from queueworks.core.results_backend import DATABASE_BACKENDS

    readers = [app for app in READERS_OF_DJANGO_DB_RESULTS if app in installed]
    if result_backend in DATABASE_BACKENDS or not readers:
        return []
    return [Warning(
        f"CELERY_RESULT_BACKEND is {result_backend.split('://')[0]}://, but {', '.join(readers)} "
        "read task states and results from django-db: their tasks would stay PENDING.",
        hint="Keep the default CELERY_RESULT_BACKEND (the project's database: "
             "queueworks.core.results_backend:UpsertDatabaseBackend, or django-db) with the task API "
             "and the ops dashboard; a Redis broker works with it.",
        id="doctor.W002",
    )]


@register(Tags.compatibility, "results")
def results_backend_check(app_configs=None, **kwargs):
    return results_backend_warnings(result_backend=str(settings.CELERY_RESULT_BACKEND),
                                    installed=list(settings.INSTALLED_APPS))
