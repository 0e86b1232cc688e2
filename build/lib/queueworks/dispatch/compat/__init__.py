"""Every private name of celery, py-amqp and billiard the project uses.

One module per library (kombu has none: the project uses its public API
only).  Each one names the version it was tested with and
compares it with the installed one when it is imported.  On the tested
version it exports the private names; on any other version it logs one clear
warning, and ``SUPPORTED`` is False so each fast path that needs that
library's internals takes the library's stock path instead (slower, never
wrong).  tests/queueworks/dispatch/compat/ holds one contract test per private
name: when an upgrade changes one, a test fails and names it.

To move to a new library version: run those tests against it, fix what
fails, then raise ``TESTED_VERSION``.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def version_supported(library: str, installed: str, tested: str, stock_paths: str) -> bool:
    """True on the tested version; otherwise one warning naming what falls back."""
    if installed == tested:
        return True
    logger.warning(
        "%s %s is installed, but this project's fast paths were tested with %s %s only. "
        "Using %s's stock path for: %s (slower, never wrong). Run the contract tests in "
        "tests/queueworks/dispatch/compat/ against %s %s, then raise TESTED_VERSION in "
        "queueworks/dispatch/compat/%s.py.",
        library, installed, library, tested, library, stock_paths, library, installed,
        library.replace("py-", ""),
    )
    return False
