"""The package's settings, read in one place.

Every setting of the package is named ``QUEUEWORKS_<NAME>`` in the host
project's Django settings; ``DEFAULTS`` below holds the package's default for
each, and ``settings.<NAME>`` reads it (lazily, so ``override_settings`` and
pytest-django's ``settings`` fixture apply at once).  ``manage.py check``
names every one that is missing or wrong (``queueworks/core/checks_conf.py``).

The host project's own pieces are named by dotted paths, never imported by
the package:

* ``QUEUEWORKS_TOPOLOGY``: the topology declaration (``module:ATTRIBUTE``);
* ``QUEUEWORKS_INVENTORY``: the host inventory, optional;
* ``QUEUEWORKS_CELERY_APP``: the project's Celery application.

Their defaults follow Celery's Django layout: beside the settings module's
top package (``<project>.topology:TOPOLOGY``, ``<project>.inventory:INVENTORY``,
``<project>.celery:app``).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

# name (without the prefix) -> the package's default.  A default of
# ``REQUIRED`` has none: the system check reports it missing.
PREFIX = "QUEUEWORKS_"
REQUIRED = object()

DEFAULTS: dict[str, Any] = {
    # Tasks Flower keeps in memory and in its persisted state (its --max_tasks):
    # sized so Flower stays within 150 MiB (bench/flower_memory.py,
    # docs/operations.md).  Every task's history stays in the database (/ops/).
    "FLOWER_MAX_TASKS": 2_000,
    # The host project's pieces (dotted paths; see the module docstring).
    "TOPOLOGY": None,
    "INVENTORY": None,
    "CELERY_APP": None,
    # The name programs, units, the RabbitMQ vhost and metrics carry; None:
    # the settings module's top package.
    "PROJECT_NAME": None,
    # The project's root directory (deploy/, run/ and .env live there); None: BASE_DIR.
    "PROJECT_ROOT": None,
    # "development" marks the admin as such; "production" is the safe default.
    "PROFILE": "production",
    # Task API (queueworks/taskapi): broker access from a request, limits, pages.
    "TASKAPI_BROKER_TIMEOUT": 2.0,
    "TASKAPI_BROKER_RETRIES": 1,
    "TASKAPI_INSPECT_TIMEOUT": 1.0,
    "TASKAPI_MAX_DELAY_SECONDS": 25 * 60,
    "TASKAPI_MAX_BODY_BYTES": 64 * 1024,
    "TASKAPI_MAX_JSON_DEPTH": 8,
    "TASKAPI_PAGE_SIZE": 50,
    "TASKAPI_OUTBOX_REPUBLISH_AFTER_SECONDS": 60.0,
    "TASKAPI_WORKERS_SNAPSHOT_SECONDS": 5.0,
    # The project's Task API allowlist: ``module:ATTRIBUTE`` of AllowedTask entries.
    "TASKAPI_ALLOWLIST": None,
    "TASKAPI_THROTTLE_RATES": {"start": "120/min", "bulk": "20/min", "reads": "600/min",
                               "anon": "60/min"},
    # Bulk enqueue (queueworks/dispatch/bulk.py): most tasks per call.
    "DISPATCH_BULK_MAX_ITEMS": 1000,
    # Operations (queueworks/ops): RabbitMQ's management API, alerts, dashboard.
    "RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:15672",
    "RABBITMQ_MANAGEMENT_USER": "",
    "RABBITMQ_MANAGEMENT_PASSWORD": "",
    "OPS_ALERT_CHANNELS": ["queueworks.ops.alerts.LogChannel",
                           "queueworks.ops.alerts.EmailChannel"],
    "OPS_NO_CONSUMER_GRACE_SECONDS": 30,
    # The alerts program (`manage.py ops_alerts --loop`) evaluates this often.
    "OPS_ALERTS_INTERVAL_SECONDS": 60,
    "OPS_REFRESH_SECONDS": 10,
    "OPS_AUDIT_RETENTION_DAYS": 180,
    "OPERATOR_EMAILS": [],
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks):
    # the login lockout and the audit log (queueworks/core/client_address.py).
    "TRUSTED_PROXIES": [],
    # Metrics (queueworks/metrics): HTTP basic credentials of a scraper.
    "METRICS_USERNAME": "",
    "METRICS_PASSWORD": "",
    # Reliability (queueworks/reliability): see docs/reliability.md.
    "RELIABILITY_DELIVERY_LIMIT": 5,
    "RELIABILITY_LONG_DELAY_SECONDS": 900,
    # "classic" or "quorum": how every topology queue is declared.
    "TASK_QUEUE_TYPE": "classic",
    # The worker consumer the cluster consumer wraps (queueworks/core/cluster.py).
    "CLUSTER_BASE_WORKER_CONSUMER": "celery.worker.consumer:Consumer",
    # The settings module rendered program files and units run with; None:
    # ``<project>.settings``.
    "DEPLOY_SETTINGS_MODULE": None,
    # The test-only app (its tasks may be routed only while it is installed).
    "TEST_SUPPORT_APP": None,
}


def project_name() -> str:
    """QUEUEWORKS_PROJECT_NAME, or the settings module's top package."""
    configured = settings.PROJECT_NAME
    if configured:
        return configured
    from django.conf import settings as django_settings

    module = getattr(django_settings, "SETTINGS_MODULE", None) or os.environ.get(
        "DJANGO_SETTINGS_MODULE", "")
    return module.split(".")[0] or "queueworks"


def project_root() -> Path:
    """QUEUEWORKS_PROJECT_ROOT, else Django's conventional BASE_DIR."""
    from django.conf import settings as django_settings
    from django.core.exceptions import ImproperlyConfigured

    root = settings.PROJECT_ROOT or getattr(django_settings, "BASE_DIR", None)
    if root is None:
        raise ImproperlyConfigured("Set QUEUEWORKS_PROJECT_ROOT (or BASE_DIR): the directory "
                                   "that holds deploy/ and run/.")
    return Path(root)


def settings_module() -> str:
    """The dotted settings module the host project runs with."""
    from django.conf import settings as django_settings

    return getattr(django_settings, "SETTINGS_MODULE", None) or os.environ["DJANGO_SETTINGS_MODULE"]


def deploy_settings_module() -> str:
    """DJANGO_SETTINGS_MODULE of the rendered programs (supervisor, systemd)."""
    return settings.DEPLOY_SETTINGS_MODULE or f"{project_name()}.settings"


def celery_app_argument() -> str:
    """What ``celery -A`` is given: the project package when the app is where
    Celery looks by itself (``<project>.celery:app``), else the dotted path."""
    path = celery_app_path()
    return project_name() if path == f"{project_name()}.celery:app" else path


def wsgi_application() -> str:
    """gunicorn's ``module:callable`` from Django's WSGI_APPLICATION."""
    from django.conf import settings as django_settings

    module, _, attribute = django_settings.WSGI_APPLICATION.rpartition(".")
    return f"{module}:{attribute}"


def import_dotted(path: str) -> Any:
    """``module:ATTRIBUTE`` or ``module.ATTRIBUTE`` -> the object."""
    if ":" in path:
        module_name, attribute = path.split(":", 1)
    else:
        module_name, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def _path(name: str, default_module: str, attribute: str) -> str:
    return getattr(settings, name) or f"{project_name()}.{default_module}:{attribute}"


def topology_path() -> str:
    return _path("TOPOLOGY", "topology", "TOPOLOGY")


def inventory_path() -> str:
    return _path("INVENTORY", "inventory", "INVENTORY")


def celery_app_path() -> str:
    return _path("CELERY_APP", "celery", "app")


def topology():
    """The host project's Topology (QUEUEWORKS_TOPOLOGY)."""
    from queueworks.core.topology import Topology

    declared = import_dotted(topology_path())
    if not isinstance(declared, Topology):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"QUEUEWORKS_TOPOLOGY={topology_path()!r} is a "
                                   f"{type(declared).__name__}, not a queueworks Topology.")
    return declared


def inventory():
    """The host project's Inventory, or None when it declares none
    (QUEUEWORKS_INVENTORY; a missing default module means none)."""
    path = inventory_path()
    try:
        return import_dotted(path)
    except ModuleNotFoundError as exc:
        if settings.INVENTORY or exc.name != path.split(":")[0]:
            raise
        return None


def celery_app():
    """The host project's Celery application (QUEUEWORKS_CELERY_APP).

    Never Celery's ``current_app`` fallback: a default app would publish with
    none of the project's queues, routes or confirms.
    """
    return import_dotted(celery_app_path())


class _Settings:
    """``settings.NAME`` is ``QUEUEWORKS_NAME`` from Django's settings, or its default."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"queueworks has no setting {name!r} ({PREFIX}{name}).")
        from django.conf import settings as django_settings

        return getattr(django_settings, PREFIX + name, DEFAULTS[name])


settings = _Settings()


def __getattr__(name: str) -> Any:
    # ``from queueworks.conf import TOPOLOGY`` in a module that is imported
    # after the settings are configured (views, services, commands).
    if name == "TOPOLOGY":
        return topology()
    raise AttributeError(name)
