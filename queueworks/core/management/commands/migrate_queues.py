"""Redeclare every topology queue whose live type or arguments differ, losing nothing
(and its exchange when that has another type: queueworks/core/exchange_swap.py),
and move the messages of fair sub-queues the topology no longer declares to
where a publish would send them now (queueworks/limits/fair_stranded.py).

    python manage.py migrate_queues --dry-run        # the plan, changes nothing
    python manage.py migrate_queues                  # migrate (see queueworks/core/queue_migration.py)
    python manage.py migrate_queues --queue celery   # only that queue

Consumers are paused by stopping their supervisor programs (``--run-dir``
holds supervisor.sock).  Producers keep running: their messages land in the
holding queue (an alternate-exchange policy; the broker user needs the
'policymaker' tag).  ``--stop-producers`` stops beat and web instead.
"""

from __future__ import annotations

import os
import xmlrpc.client
from pathlib import Path

from amqp.exceptions import AMQPError
from django.core.management.base import BaseCommand, CommandError
from kombu.exceptions import OperationalError

from queueworks.core.broker_state import BrokerStateError, current_broker_url
from queueworks.core.queue_migration import (
    QueueMigrationError,
    queue_migrate,
    queues_to_migrate,
    results_table,
)
from queueworks.conf import project_root
from queueworks.limits.fair_stranded import fair_messages_rehome, stranded_fair_queues
from queueworks.core.supervisord_client import Supervisord, SupervisordUnreachable

PRODUCERS = ("beat", "web")


class Supervisor:
    """Stop (warm shutdown, waited for) and start programs through supervisord,
    refusals as the command's errors."""

    def __init__(self, run_dir: Path):
        self.socket = run_dir / "supervisor.sock"
        self.client = Supervisord(self.socket)

    def names(self) -> set[str]:
        try:
            return set(self.client.process_info())
        except (SupervisordUnreachable, xmlrpc.client.Error) as exc:
            raise CommandError(f"supervisord is not reachable at {self.socket} ({exc}): the "
                               "consumers cannot be paused; pass --run-dir") from exc

    def stop(self, programs: list[str]) -> None:
        known = self.names()
        for name in programs:
            if name in known:
                self._do(self.client.stop, name, "stop")

    def start(self, programs: list[str]) -> None:
        known = self.names()
        for name in programs:
            if name in known:
                self._do(lambda program: self.client.start(program, wait=False), name, "start")

    @staticmethod
    def _do(action, name: str, verb: str) -> None:
        try:
            action(name)
        except (SupervisordUnreachable, xmlrpc.client.Fault) as exc:
            detail = exc.faultString if isinstance(exc, xmlrpc.client.Fault) else exc
            raise CommandError(f"cannot {verb} {name}: {detail}") from exc


class Command(BaseCommand):
    help = ("Delete and redeclare every topology queue whose type or arguments differ from "
            "projectname/topology.py (and its exchange when its type differs), moving its "
            "messages aside and back with its workers paused, and move the messages of fair "
            "sub-queues the topology no longer declares; --dry-run prints the plan.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print the plan only.")
        parser.add_argument("--queue", action="append", default=[],
                            help="Only this topology queue (repeatable).")
        parser.add_argument(
            "--run-dir", default=os.environ.get("RUN_DIR", str(project_root() / "run")),
            help="Directory holding supervisor.sock (default: $RUN_DIR or run/).")
        parser.add_argument("--no-resume", action="store_true",
                            help="Leave the paused programs stopped afterwards.")
        parser.add_argument("--stop-producers", action="store_true",
                            help="Stop beat and web meanwhile instead of the alternate-exchange "
                                 "policy (for a broker user without the 'policymaker' tag).")
        parser.add_argument("--timeout", type=float, default=300,
                            help="Seconds to wait for consumers to leave and unacked "
                                 "messages to return (default 300).")

    def handle(self, *args, dry_run, queue, run_dir, no_resume, stop_producers, timeout,
               **options):
        from queueworks.conf import celery_app
        app = celery_app()
        from queueworks.conf import TOPOLOGY

        unknown = sorted(set(queue) - set(TOPOLOGY.queue_names()))
        if unknown:
            raise CommandError(f"--queue {', '.join(unknown)}: not a topology queue "
                               f"(known: {', '.join(TOPOLOGY.queue_names())})")
        if timeout <= 0:
            raise CommandError("--timeout must be a positive number of seconds.")
        broker_url = current_broker_url()
        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=2)
                plans = [plan for plan in queues_to_migrate(connection=connection,
                                                            broker_url=broker_url)
                         if not queue or plan.queue in queue]
                stranded = [sub for sub in stranded_fair_queues(connection, TOPOLOGY,
                                                                broker_url=broker_url)
                            if sub.ready and (not queue or sub.parent in queue)]
                if not plans and not stranded:
                    self.stdout.write("every queue matches the topology: nothing to migrate")
                    return
                for plan in plans:
                    self.stdout.write("\n".join(plan.lines()))
                for sub in stranded:
                    self.stdout.write(f"{sub.name}: {sub.ready} message(s) in a fair sub-queue "
                                      f"the topology no longer declares; each goes where a "
                                      f"publish to {sub.parent} would send it now")
                if dry_run:
                    self.stdout.write("dry run: nothing changed")
                    return
                if plans:
                    self._migrate(plans, connection, broker_url, Supervisor(Path(run_dir)),
                                  no_resume=no_resume, stop_producers=stop_producers,
                                  timeout=timeout)
                for sub in stranded:
                    moved = fair_messages_rehome(connection, sub, topology=TOPOLOGY)
                    self._step(f"{sub.name}: moved " + (", ".join(
                        f"{count} to {target}" for target, count in sorted(moved.items()))
                        or "nothing (emptied meanwhile)"))
        except (OperationalError, OSError) as exc:
            raise CommandError(f"cannot reach the broker: {exc}") from exc
        except (BrokerStateError, QueueMigrationError, AMQPError) as exc:
            # AMQPError: the broker refused a step (permissions, a policy).
            raise CommandError(f"{exc}; nothing is lost: run migrate_queues again to finish "
                               "(it finds the holding queue)") from exc

    def _step(self, line: str) -> None:
        # Flushed: in a pipe (tee, a log collector) each step shows when it
        # happens, not when the command exits.
        self.stdout.write(line)
        self.stdout.flush()

    def _migrate(self, plans, connection, broker_url, supervisor, *, no_resume,
                 stop_producers, timeout):
        supervisor.names()  # fail before touching anything when supervisord is unreachable
        if stop_producers:
            self.stdout.write(f"stopping producers: {', '.join(PRODUCERS)}")
            supervisor.stop(list(PRODUCERS))
        results = []
        try:
            for plan in plans:
                results.append(queue_migrate(
                    plan=plan, connection=connection, broker_url=broker_url,
                    pause=supervisor.stop,
                    resume=(lambda programs: None) if no_resume else supervisor.start,
                    use_policy=not stop_producers, timeout=timeout, log=self._step))
        finally:
            if stop_producers:
                supervisor.start(list(PRODUCERS))
        self.stdout.write(results_table(results))
        lost = [r.queue for r in results if r.after < r.before]
        if lost:
            raise CommandError(f"fewer messages after than before in {', '.join(lost)}")
