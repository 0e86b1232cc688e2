"""Operator switches for the bulk lane's fast paths.

``DISPATCH_FAST_PATHS_OFF`` (comma-separated, in a worker's environment)
turns single pieces off, each falling back to Celery's or py-amqp's own
code for that step.  bench/pieces.py uses it to measure what each piece
earns; an operator can use it to rule a piece out when chasing a problem.

* ``lean_path``: every message takes Celery's default strategy, Request and pool;
* ``coalesced_acks``: the lean path acknowledges each message on its own.
"""

from __future__ import annotations

import functools
import logging
import os

logger = logging.getLogger(__name__)

ENV = "DISPATCH_FAST_PATHS_OFF"
PIECES = ("lean_path", "coalesced_acks")


def switched_off(environ=None) -> frozenset[str]:
    """The pieces switched off; an unknown name is logged and ignored."""
    return _parse((os.environ if environ is None else environ).get(ENV, ""))


@functools.lru_cache(maxsize=16)
def _parse(value: str) -> frozenset[str]:
    # Cached: a worker asks once per task at every consumer start (the lean
    # strategy), and an unknown name is worth one warning, not one per task.
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(PIECES))
    if unknown:
        logger.warning("%s: unknown fast path(s) %s ignored; known: %s.", ENV,
                       ", ".join(unknown), ", ".join(PIECES))
    return frozenset(names & set(PIECES))
