"""System checks of the package's settings (QUEUEWORKS_*, queueworks/conf.py):
every one that is misspelt, of the wrong type, or names a piece of the project
that cannot be imported is reported by name, before anything starts."""

from __future__ import annotations

import difflib
import ipaddress

from django.conf import settings as django_settings
from django.core.checks import Error, Tags, register

from queueworks import conf

# Settings whose value is a dotted path to one of the project's objects.
DOTTED = {
    "TOPOLOGY": conf.topology_path,
    "CELERY_APP": conf.celery_app_path,
    "INVENTORY": conf.inventory_path,
}
CHOICES = {"TASK_QUEUE_TYPE": ("classic", "quorum"), "PROFILE": ("development", "production")}


def _error(name: str, message: str, hint: str = "") -> Error:
    return Error(f"{conf.PREFIX}{name}: {message}", hint=hint or None, id="queueworks.E001")


def check_settings(configured: dict[str, object]) -> list[Error]:
    """``configured``: the project's QUEUEWORKS_* settings by name without the prefix."""
    errors = []
    for name, value in sorted(configured.items()):
        if name not in conf.DEFAULTS:
            close = difflib.get_close_matches(name, conf.DEFAULTS, n=1)
            errors.append(_error(name, "no such setting.",
                                 f"Did you mean {conf.PREFIX}{close[0]}?" if close
                                 else "See queueworks/conf.py for the settings."))
            continue
        default = conf.DEFAULTS[name]
        if default is not None and value is not None and not _same_kind(value, default):
            errors.append(_error(name, f"must be {type(default).__name__}, not "
                                       f"{type(value).__name__} ({value!r})."))
        elif name in CHOICES and value not in CHOICES[name]:
            errors.append(_error(name, f"must be one of {', '.join(CHOICES[name])}, "
                                       f"not {value!r}."))
        elif name == "TRUSTED_PROXIES":
            errors.extend(_error(name, f"{entry!r} is not an address or network.")
                          for entry in value if not _is_network(entry))
    return errors


def _is_network(entry) -> bool:
    try:
        ipaddress.ip_network(str(entry), strict=False)
    except ValueError:
        return False
    return True


def _same_kind(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_project_pieces() -> list[Error]:
    """The topology and the Celery app must import; an inventory named
    explicitly must too (the default one is optional)."""
    errors = []
    for name, path_of in DOTTED.items():
        path = path_of()
        try:
            if name == "TOPOLOGY":
                conf.topology()
            elif name == "CELERY_APP":
                from celery import Celery

                app = conf.celery_app()
                if not isinstance(app, Celery):
                    errors.append(_error(name, f"{path!r} is a {type(app).__name__}, "
                                               "not a Celery application."))
            else:
                conf.inventory()
        except Exception as exc:  # noqa: BLE001  (any failure to import is the finding)
            explicit = getattr(django_settings, conf.PREFIX + name, None)
            errors.append(_error(
                name, f"cannot load {path!r}{'' if explicit else ' (the default)'}: "
                      f"{type(exc).__name__}: {exc}",
                f"Set {conf.PREFIX}{name} to the project's 'module:ATTRIBUTE'."))
    return errors


@register(Tags.compatibility)
def check_queueworks_settings(app_configs=None, **kwargs):
    configured = {key[len(conf.PREFIX):]: getattr(django_settings, key)
                  for key in dir(django_settings) if key.startswith(conf.PREFIX)}
    return check_settings(configured) + check_project_pieces()
