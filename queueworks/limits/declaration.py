"""What a route may declare about how its task runs across all workers.

Each declaration may name a *key*: the name of one of the task's parameters
(``"tenant_id"``), whose value in a call picks the bucket the call counts
against.  Without a key, the task as a whole is one bucket.  ``Unique`` names
one or more parameters; together their values are the unique key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """At most ``starts`` task starts per ``per_seconds``, across all processes
    and hosts, plus at most ``burst`` extra starts in any one window."""

    starts: int
    per_seconds: float = 1.0
    burst: int = 0
    key: str | None = None


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most ``running`` runs at once, per key (or for the task as a whole).

    A slot is a lease: a worker that dies holding one (SIGKILL) frees it when
    the lease ends.  ``lease_seconds`` None: the route's hard time limit plus
    a margin, so a live run never outlives its lease."""

    running: int
    key: str | None = None
    lease_seconds: int | None = None


@dataclass(frozen=True)
class FairShare:
    """Within the route's queue, calls with different ``key`` values take turns,
    so one caller's flood does not sit in front of everyone else's work."""

    key: str


@dataclass(frozen=True)
class Unique:
    """While a call with the same values of ``key`` is waiting or running, a
    second enqueue returns the first's id and runs nothing.  The claim is a
    lease (``lease_seconds`` None: derived from the route's limits).

    ``lease_seconds``: how long a started run holds the key if its worker dies
    (None: the route's hard time limit plus a margin).  ``waiting_seconds``:
    how long an enqueued task holds it before it starts; past that, a new
    enqueue takes the key over and the old message runs nothing when it
    arrives (queueworks/limits/unique.py)."""

    key: str | tuple[str, ...]
    lease_seconds: int | None = None
    waiting_seconds: int = 86_400

    def __post_init__(self):
        if not self.parameters or not all(isinstance(n, str) and n for n in self.parameters):
            raise ValueError("Unique: key names one or more task parameters.")
        if self.lease_seconds is not None and self.lease_seconds < 1:
            raise ValueError("Unique: lease_seconds must be at least 1.")
        if self.waiting_seconds < 1:
            raise ValueError("Unique: waiting_seconds must be at least 1.")

    @property
    def parameters(self) -> tuple[str, ...]:
        return (self.key,) if isinstance(self.key, str) else tuple(self.key)


class MissingKeyArgument(LookupError):
    """The call does not pass the argument a declaration takes its key from."""


def call_argument(parameters: Sequence[str], name: str, args: Sequence,
                  kwargs: Mapping[str, object]) -> object:
    """The value of the task parameter ``name`` in one call.

    ``parameters`` are the task function's parameter names in order, so a
    positional argument is found by its place."""
    if name in kwargs:
        return kwargs[name]
    try:
        index = list(parameters).index(name)
    except ValueError:
        raise MissingKeyArgument(f"the task takes no parameter {name!r}") from None
    if index < len(args):
        return args[index]
    raise MissingKeyArgument(f"the call does not pass {name!r}")
