"""Operator switches for the bulk lane's and the bulk enqueue's fast paths.

``DISPATCH_FAST_PATHS_OFF`` (comma-separated) turns single pieces off, each
falling back to Celery's or py-amqp's own code for that step.
bench/pieces.py and bench/producer_pieces.py use it to measure what each
piece earns; an operator can use it to rule a piece out when chasing a
problem.  Where it is read depends on the piece.

Worker pieces, read once when a bulk worker starts (the worker's environment):

* ``lean_path``: every message takes Celery's default strategy, Request and pool;
* ``coalesced_acks``: the lean path acknowledges each message on its own.

Producer pieces, read at enqueue time in the process that publishes (the
environment of the web server, beat, the outbox sweeper or whatever calls
``tasks_enqueue_bulk``/``task_enqueue``; a worker's setting does not reach
them), once per batch or single message:

* ``message_slimming``: messages carry every protocol 2 header Celery's own
  ``app.amqp.as_task_v2`` sends, those at their defaults included, and
  Celery's standard embed (callbacks, errbacks, chain, chord: all null);
* ``batched_frames``: each message of a batch goes out through py-amqp's own
  publish (its frame writer, one socket write per message) instead of the
  batch's frames written in 64 KiB chunks.
"""

from __future__ import annotations

import functools
import logging
import os

logger = logging.getLogger(__name__)

ENV = "DISPATCH_FAST_PATHS_OFF"
WORKER_PIECES = ("lean_path", "coalesced_acks")
PRODUCER_PIECES = ("message_slimming", "batched_frames")
PIECES = WORKER_PIECES + PRODUCER_PIECES


def switched_off(environ=None) -> frozenset[str]:
    """The pieces switched off; an unknown name is logged (once) and ignored."""
    return _parse((os.environ if environ is None else environ).get(ENV, ""))


@functools.lru_cache(maxsize=16)
def _parse(value: str) -> frozenset[str]:
    # Cached: producers read the switch for every batch and every single
    # enqueue, workers once per task at every consumer start (the lean
    # strategy); an unknown name is worth one warning, not one per message.
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(PIECES))
    if unknown:
        logger.warning("%s: unknown fast path(s) %s ignored; known: %s.", ENV,
                       ", ".join(unknown), ", ".join(PIECES))
    return frozenset(names & set(PIECES))
