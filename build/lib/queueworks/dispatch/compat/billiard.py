"""billiard names the solo pool's time limits and the lean path use.

``ExceptionInfo`` (``billiard.einfo``) is what Celery's tracer hands its
Request for a failed task; the lean path builds one when a time limit hits
outside the task body.  The time-limit exceptions are public (also exported
by ``celery.exceptions``) and are imported from there.
"""

from __future__ import annotations

import billiard as _billiard
from billiard.einfo import ExceptionInfo

from queueworks.dispatch.compat import version_supported

TESTED_VERSION = "4.3.2"
SUPPORTED = version_supported(
    "billiard", _billiard.__version__, TESTED_VERSION,
    "nothing (ExceptionInfo is the only name used, with its public constructor)")

__all__ = ["SUPPORTED", "TESTED_VERSION", "ExceptionInfo"]
