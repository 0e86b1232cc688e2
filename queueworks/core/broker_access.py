"""RabbitMQ least privilege: the project's vhost, users and permission patterns.

The project's user may configure, write and read only the exchanges and
queues the project itself uses: the topology's queues (each with its direct
exchange of the same name), the dead-letter exchange and queue, beat's lock
queue, and what Celery names on its own (remote control ``*.celery.pidbox``,
replies ``*.reply.celery.pidbox``, monitoring events ``celeryev*``, quorum
queues' native delayed delivery ``celery_delayed_*``).  Publishing through
the default exchange (``amq.default``) is a write.  Nothing else, so a
leaked broker password cannot read or create other applications' queues.

A separate ``monitoring``-tagged user reads RABBITMQ's management API (queue
lengths for /ops/, Flower and ``manage.py doctor``); it has no AMQP
permissions.  ``guest`` is never used.

No Django here: deploy/bin/ensure-rabbitmq-user.sh runs this module before
the settings can load (they need the broker URL it writes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import importlib
import os

from queueworks.core.topology import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, FAIR_SEPARATOR, Topology


def project_name(environ=os.environ) -> str:
    """The host project's name without Django (its settings need the broker
    URL this module's caller writes): $QUEUEWORKS_PROJECT_NAME, else the top
    package of $DJANGO_SETTINGS_MODULE."""
    name = environ.get("QUEUEWORKS_PROJECT_NAME") or environ.get(
        "DJANGO_SETTINGS_MODULE", "").split(".")[0]
    if not name:
        raise SystemExit("Set QUEUEWORKS_PROJECT_NAME (or DJANGO_SETTINGS_MODULE): it names the "
                         "project's RabbitMQ vhost and users.")
    return name


def declared_topology(environ=os.environ) -> Topology:
    """$QUEUEWORKS_TOPOLOGY (``module:ATTRIBUTE``), else ``<project>.topology:TOPOLOGY``."""
    path = environ.get("QUEUEWORKS_TOPOLOGY") or f"{project_name(environ)}.topology:TOPOLOGY"
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "TOPOLOGY")


APP_USER = project_name()
MONITOR_USER = f"{APP_USER}-monitor"
VHOST = APP_USER
# Development and tests only: creates the test suite's throw-away vhosts.
TEST_ADMIN_USER = f"{APP_USER}-test-admin"

# queueworks/reliability/beat.py (kept literal: that module imports Django).
BEAT_LOCK_QUEUE = "celery.beat.lock"
CELERY_EXACT_NAMES = ("celery.pidbox", "reply.celery.pidbox", "celeryev", BEAT_LOCK_QUEUE)
# queueworks/core/queue_migration.py's holding queues (kept literal: it imports Django).
MIGRATION_HOLD_SUFFIX = ".migrate-hold"
CELERY_NAME_PATTERNS = (
    r".+\.celery\.pidbox",        # each worker's remote-control queue
    r".+\.reply\.celery\.pidbox",  # inspect/control reply queues
    r"celeryev\..+",               # event receivers (Flower, /ops/, tests)
    r"celery_delayed_.+",          # quorum queues' native delayed delivery
)


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str

    def as_json(self) -> dict[str, str]:
        return {"configure": self.configure, "write": self.write, "read": self.read}


def _alternation(exact: list[str], patterns: tuple[str, ...]) -> str:
    parts = [re.escape(name) for name in sorted(set(exact))] + list(patterns)
    return "^(" + "|".join(parts) + ")$"


def project_permissions(topology: Topology | None = None) -> Permissions:
    """The project's exchanges and queues, as RabbitMQ permission regexes."""
    queues = (topology or declared_topology()).queue_names()
    # manage.py migrate_queues parks a queue's messages in <queue>.migrate-hold
    # (an exchange and a queue) while it declares the queue again.
    holds = [f"{queue}{MIGRATION_HOLD_SUFFIX}" for queue in queues]
    names = [*queues, *holds, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, *CELERY_EXACT_NAMES]
    # Fair sharing's sub-queues and their exchanges, "<queue>.fair.<n>": those
    # declared now, and those a smaller fair_buckets left behind, which
    # migrate_queues empties (queueworks/limits/fair_stranded.py).
    fair = tuple(re.escape(f"{queue}{FAIR_SEPARATOR}") + "[0-9]+" for queue in sorted(queues))
    resources = _alternation(names, CELERY_NAME_PATTERNS + fair)
    # Publishing to the default exchange (replies, direct sends) is a write on amq.default.
    write = _alternation([*names, "amq.default"], CELERY_NAME_PATTERNS + fair)
    return Permissions(configure=resources, write=write, read=resources)


# The monitoring user reads the management API only: no AMQP resource at all.
MONITOR_PERMISSIONS = Permissions(configure="^$", write="^$", read="^$")


if __name__ == "__main__":
    permissions = project_permissions()
    print(f"configure {permissions.configure}\nwrite {permissions.write}\nread {permissions.read}")
