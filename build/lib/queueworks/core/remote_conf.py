"""`celery inspect conf` with the project's settings masked.

A worker answers `conf` with its whole configuration, and with Django's
settings as the namespace that is every Django setting: Celery censors
``broker_url`` and names with KEY, SECRET, PASS..., but not
``CELERY_BROKER_URL``, whose value holds the broker password.  Flower's
worker "Config" tab shows the same reply.  This replaces the command with
Celery's own reply passed through the filter Django's error page uses
(queueworks/core/reporting.py), through Celery's public way of registering remote
control commands.
"""

from celery.utils.serialization import strtobool
from celery.worker import control

_stock_conf = control.conf


@control.inspect_command(alias="dump_conf", signature="[include_defaults=False]",
                         args=[("with_defaults", strtobool)])
def conf(state, with_defaults=False, **kwargs):
    """List configuration (secrets masked)."""
    from queueworks.core.reporting import SafeExceptionReporterFilter

    reply = _stock_conf(state, with_defaults=with_defaults, **kwargs)
    censor = SafeExceptionReporterFilter()
    return {key: censor.cleanse_setting(key, value) for key, value in reply.items()}
