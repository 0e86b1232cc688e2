"""``manage.py balance``: the per-host process balancer (the ``balancer`` program).

Refuses to start when the topology declares no ``balance`` or one that cannot
work (see ``Balance.problems``).  ``--once`` decides once and prints why.
"""

from __future__ import annotations

import importlib
import logging
import signal
import socket
import threading
import time

from django.core.management.base import BaseCommand, CommandError

from queueworks.core.topology import Topology

logger = logging.getLogger("queueworks.balancer")
# Flower asks every 5 s; a lease is at least that long.
EVENTS_RENEW_SECONDS = 5.0


def load_topology(path: str) -> Topology:
    module_name, _, attribute = path.partition(":")
    try:
        topology = getattr(importlib.import_module(module_name), attribute or "TOPOLOGY")
    except (ImportError, AttributeError) as error:
        raise CommandError(f"--topology {path!r}: {error}") from None
    if not isinstance(topology, Topology):
        raise CommandError(f"--topology {path!r} is not a Topology")
    return topology


class Command(BaseCommand):
    help = "Move pool processes between the balanced worker programs of this host."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=None,
                            help="Node host name of the workers (default: this machine's, "
                                 "as Celery's %%h).")
        parser.add_argument("--topology", default=None,
                            help="module:attribute of the Topology to balance "
                                 "(default: the project's, QUEUEWORKS_TOPOLOGY).")
        parser.add_argument("--once", action="store_true", help="Decide once, print, exit.")

    def handle(self, *args, host, topology, once, **options):
        from queueworks.balancer.runner import Balancer
        from queueworks.balancer.pools import events_renew
        from queueworks.balancer.runtimes import EventListener
        from queueworks.conf import celery_app
        app = celery_app()

        from queueworks.conf import topology_path
        declared = load_topology(topology or topology_path())
        if declared.balance is None:
            raise CommandError("The topology declares no balance: nothing to balance "
                               "(see docs/balancer.md).")
        problems = declared.balance.problems(declared)
        if problems:
            raise CommandError("Balance cannot work: " + "; ".join(problems) + ".")
        balancer = Balancer(app=app, topology=declared, host=host or socket.gethostname())
        if once:
            self.stdout.write(balancer.tick().summary)
            balancer.close()
            return

        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        listener = EventListener(app, balancer.window, balancer.event_nodes)
        listener.start()
        renewed = 0.0
        logger.info("Balancing %s on %s: budget %d, max shift %d, cooldown %.0f s.",
                    ", ".join(declared.balance.workers), balancer.host,
                    declared.balance.budget, declared.balance.max_shift,
                    declared.balance.cooldown_seconds)
        try:
            while not stopping.is_set():
                started = time.monotonic()
                try:
                    if started - renewed >= EVENTS_RENEW_SECONDS:
                        events_renew(app, balancer.nodes)
                        renewed = started
                    decision = balancer.tick()
                    if not decision.moves:
                        logger.debug("%s", decision.summary)
                except Exception:  # noqa: BLE001 - a broker hiccup must not end the program
                    logger.exception("Balancing failed this round; trying again.")
                stopping.wait(max(0.0, declared.balance.interval_seconds
                                  - (time.monotonic() - started)))
        finally:
            listener.stop()
            balancer.close()
