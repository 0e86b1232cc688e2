"""Failures whose own text must not reach an answer.

A broker's or database's error text can name hosts, users, vhosts, SQL or a
password someone put in a URL.  The answer gets a stable code and message
and a short random reference; the log gets the text under the same
reference, so an operator finds it from what the user reports.
"""

from __future__ import annotations

import logging
import secrets


def error_reference_logged(*, logger: logging.Logger, what: str, detail: str,
                           exc: BaseException | None = None, level: int = logging.ERROR) -> str:
    """Log ``what`` and ``detail`` (and ``exc``'s traceback) with a new reference; returns it."""
    reference = secrets.token_hex(6)
    logger.log(level, "%s [reference %s]: %s", what, reference, detail, exc_info=exc)
    return reference
