"""Doctor checks of results, time zones, modes, credentials and system checks."""

from __future__ import annotations

import os
import uuid
import zoneinfo
from urllib.parse import unquote, urlsplit

from queueworks.doctor.findings import (
    DEFAULT_FLOWER_AUTH, DEFAULT_SECRET_KEYS, FAIL, OK, WARN, Context, Finding, _describe, _safe_url,
)


# -- results, time, modes, credentials --------------------------------------------
def check_result_backend(ctx: Context) -> list[Finding]:
    from django.conf import settings

    from queueworks.conf import celery_app
    app = celery_app()

    backend_name = settings.CELERY_RESULT_BACKEND
    task_id = f"doctor-{uuid.uuid4()}"
    try:
        backend = app.backend
        backend.store_result(task_id, {"doctor": True}, "SUCCESS")
        meta = backend.get_task_meta(task_id)
        if meta.get("status") != "SUCCESS":
            raise RuntimeError(f"read back status {meta.get('status')!r}")
    except Exception as error:  # noqa: BLE001
        return [Finding("result backend", FAIL, f"{_safe_url(backend_name)} not writable: "
                        f"{_describe(error)}",
                        "django-db: `python manage.py migrate`; redis://: start Redis; "
                        "or fix CELERY_RESULT_BACKEND")]
    finally:
        _forget(task_id)
    from queueworks.doctor.checks import results_backend_warnings

    return [Finding("result backend", OK, f"{_safe_url(backend_name)}: wrote and read back "
                    "a result")] + [
        Finding("result backend", WARN, warning.msg, warning.hint)
        for warning in results_backend_warnings(result_backend=str(backend_name),
                                                installed=list(settings.INSTALLED_APPS))]


def _forget(task_id: str) -> None:
    from queueworks.conf import celery_app
    app = celery_app()

    try:
        app.backend.forget(task_id)
    except Exception:  # noqa: BLE001 - django-db has no forget(): delete the row
        try:
            from django_celery_results.models import TaskResult

            TaskResult.objects.filter(task_id=task_id).delete()
        except Exception:  # noqa: BLE001
            pass


def check_time_zones(ctx: Context) -> list[Finding]:
    from django.conf import settings

    from queueworks.conf import TOPOLOGY

    problems = []
    django_zone, celery_zone = settings.TIME_ZONE, settings.CELERY_TIMEZONE
    for zone in {django_zone, celery_zone}:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"unknown zone {zone!r}")
    if django_zone != celery_zone:
        problems.append(f"TIME_ZONE={django_zone} but CELERY_TIMEZONE={celery_zone}")
    if not settings.USE_TZ:
        problems.append("USE_TZ is off")
    for entry in TOPOLOGY.schedules:
        zone = getattr(entry.schedule, "tz", None)
        if zone is not None and str(zone) != celery_zone:
            problems.append(f"schedule '{entry.name}' runs in {zone}")
    problems += _database_crontab_zones(celery_zone)
    if problems:
        return [Finding("time zones", FAIL, "; ".join(problems),
                        "set TIME_ZONE once (CELERY_TIMEZONE follows it) and give every "
                        "crontab that zone")]
    return [Finding("time zones", OK, f"Django, Celery and {len(TOPOLOGY.schedules)} "
                    f"schedule(s) all use {celery_zone}")]


def _database_crontab_zones(celery_zone: str) -> list[str]:
    """django-celery-beat crontab rows in another zone fire at other hours."""
    try:
        from django_celery_beat.models import CrontabSchedule, PeriodicTask

        rows = PeriodicTask.objects.filter(enabled=True, crontab__isnull=False).exclude(
            crontab__timezone=celery_zone).values_list("name", "crontab__timezone")
        return [f"database schedule '{name}' runs in {zone}" for name, zone in rows] \
            if CrontabSchedule else []
    except Exception:  # noqa: BLE001 - tables missing: nothing scheduled there
        return []


def check_eager(ctx: Context) -> list[Finding]:
    from django.conf import settings

    if not getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        return [Finding("eager mode", OK, "off: tasks go through the broker")]
    if ctx.debug:
        return [Finding("eager mode", WARN, "CELERY_EAGER is on: tasks run inline, no broker "
                        "(development only)", "unset CELERY_EAGER to use the workers")]
    return [Finding("eager mode", FAIL, "CELERY_EAGER is on with DEBUG off: tasks bypass the "
                    "broker and workers", "unset CELERY_EAGER in production")]


def check_credentials(ctx: Context) -> list[Finding]:
    from django.conf import settings

    parts = urlsplit(ctx.broker_url)
    found = []
    if not parts.scheme.startswith("redis") and \
            unquote(parts.username or "guest") == "guest" and \
            unquote(parts.password or "guest") == "guest":
        found.append("broker user guest/guest")
    if settings.SECRET_KEY in DEFAULT_SECRET_KEYS:
        found.append("the development DJANGO_SECRET_KEY")
    if os.environ.get("FLOWER_BASIC_AUTH", "") in DEFAULT_FLOWER_AUTH:
        found.append("FLOWER_BASIC_AUTH flower:change-me")
    if not found:
        return [Finding("credentials", OK, "no default credentials in use")]
    if ctx.debug:
        return [Finding("credentials", OK, f"development defaults ({', '.join(found)}); "
                        "fine while DEBUG is on")]
    return [Finding("credentials", FAIL, f"default credentials with DEBUG off: "
                    f"{', '.join(found)}",
                    "create the project's RabbitMQ user and vhost (deploy/bin/ensure-rabbitmq-user.sh, "
                    "docs/production.md), set a real "
                    "DJANGO_SECRET_KEY and FLOWER_BASIC_AUTH")]


def check_redis_guarantees(ctx: Context) -> list[Finding]:
    from django.conf import settings

    from queueworks.doctor.broker import rabbitmq_only_guarantees
    from queueworks.conf import TOPOLOGY

    return [Finding("redis guarantees", WARN, text, "use RabbitMQ where this guarantee matters")
            for text in rabbitmq_only_guarantees(
                broker_url=ctx.broker_url, topology=TOPOLOGY,
                transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None))]


def check_django(ctx: Context) -> list[Finding]:
    from django.core import checks

    messages = [m for m in checks.run_checks(include_deployment_checks=False)
                if m.level >= checks.ERROR]
    if not messages:
        return [Finding("system checks", OK, "`manage.py check` finds no error")]
    return [Finding("system checks", FAIL, f"{m.id}: {m.msg}", m.hint or "see `manage.py check`")
            for m in messages]
