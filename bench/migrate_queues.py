"""migrate_queues with a backlog: is anything lost, how long, how long paused?

    .venv/bin/python bench/migrate_queues.py --messages 10000 --unacked 500

In a throw-away vhost, ``celery`` is pre-declared the way another application
would (no ``x-dead-letter-exchange``), with its exchange and binding, and
filled with ``--messages`` distinct messages (random priorities, headers,
correlation ids, persistent).  A consumer process holds ``--unacked`` of them
unacknowledged (a worker in the middle of its prefetch); a producer thread
keeps publishing to the queue's exchange throughout (beat or the web), with
publisher confirms: a publish the broker refuses (the queue's exchange being
replaced by one of another type, queueworks/core/exchange_swap.py) is
counted and published again, as a producer with confirms and retries does.
With quorum queues (``TASK_QUEUE_TYPE=quorum``, e.g. on the 4.x node:
``QUEUEWORKS_TEST_BROKER=rabbitmq4``) the direct exchange becomes a topic one.

The migration (queueworks/core/queue_migration.py) pauses the consumer (here:
terminates the holding process, as supervisor stops a worker), waits for its
unacked messages to return, moves everything aside, redeclares, moves back.
Then every message is read back and compared (body and properties) with what
was published.  One table; the machine is shared, so times are indicative.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PROJECT_ROOT, amqp_connection, bounded, throwaway_vhost  # noqa: E402
from tests.support import rabbit  # noqa: E402

QUEUE = "celery"
KEPT = ("application_headers", "priority", "delivery_mode", "correlation_id", "content_type",
        "content_encoding", "message_id", "reply_to", "type", "app_id")

HOLDER = """
import sys, amqp
conn = amqp.Connection(host=sys.argv[1], userid=sys.argv[2], password=sys.argv[3],
                       virtual_host=sys.argv[4], heartbeat=0)
conn.connect()
channel = conn.channel()
channel.basic_qos(0, int(sys.argv[5]), False)
held = []
channel.basic_consume(queue=sys.argv[6], callback=held.append, no_ack=False)
while len(held) < int(sys.argv[5]):
    conn.drain_events(timeout=30)
print("holding", len(held), flush=True)
sys.stdin.read()  # until terminated: never acks
"""


def signature(message) -> tuple:
    properties = message.properties
    body = message.body if isinstance(message.body, bytes) else message.body.encode()
    return (body,) + tuple(repr(properties.get(key)) for key in KEPT)


def fill(vhost: str, count: int) -> Counter:
    import amqp

    conn = amqp_connection(vhost)
    channel = conn.channel()
    # As another application left it: no dead-letter argument, but priorities.
    channel.exchange_declare(QUEUE, "direct", durable=True, auto_delete=False)
    channel.queue_declare(QUEUE, durable=True, auto_delete=False)
    channel.queue_bind(QUEUE, QUEUE, QUEUE)
    channel.confirm_select()
    sent = Counter()
    for number in range(count):
        message = amqp.Message(
            body=f'{{"n": {number}, "pad": "{uuid.uuid4().hex}"}}'.encode(),
            content_type="application/json", content_encoding="utf-8", delivery_mode=2,
            priority=random.randint(0, 9), correlation_id=uuid.uuid4().hex,
            message_id=uuid.uuid4().hex, reply_to="reply.q", type="bench", app_id="bench",
            application_headers={"id": f"task-{number}", "retries": number % 3,
                                 "x-origin": "bench"})
        channel.basic_publish(message, exchange=QUEUE, routing_key=QUEUE)
        sent[signature(message)] += 1
    conn.close()
    return sent


class Producer(threading.Thread):
    """Publishes to the queue's exchange all along, as beat and the web would."""

    def __init__(self, vhost: str):
        super().__init__(daemon=True)
        self.vhost, self.sent, self.stop = vhost, Counter(), threading.Event()
        self.refused: list[str] = []

    def run(self):
        import amqp

        # Each publish waits for its confirmation: counted as sent only then.
        conn = amqp_connection(self.vhost, confirm_publish=True)
        channel = conn.channel()
        number = 0
        while not self.stop.is_set():
            message = amqp.Message(body=f'{{"live": {number}}}'.encode(), delivery_mode=2,
                                   priority=number % 10, correlation_id=f"live-{number}",
                                   application_headers={"id": f"live-{number}"})
            try:
                channel.basic_publish(message, exchange=QUEUE, routing_key=QUEUE)
            except amqp.exceptions.ChannelError as exc:
                # Not confirmed, so not counted as sent: published again below.
                self.refused.append(f"live-{number}: {exc}")
                channel = conn.channel()
                continue
            self.sent[signature(message)] += 1
            number += 1
            time.sleep(0.01)
        conn.close()


def read_all(vhost: str) -> Counter:
    """Every message in the queue, read without acking (the close puts them back)."""
    conn = amqp_connection(vhost)
    channel = conn.channel()
    found = Counter()
    while (message := channel.basic_get(QUEUE, no_ack=False)) is not None:
        found[signature(message)] += 1
    conn.close()
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--unacked", type=int, default=500)
    options = parser.parse_args(argv)
    total = bounded(options.messages)
    if not 0 <= options.unacked < total:
        raise SystemExit("error: --unacked must be between 0 and --messages - 1")
    with throwaway_vhost("bench-migrate") as vhost:
        os.environ["CELERY_BROKER_URL"] = rabbit.broker_url(vhost)
        # The migration's policy step runs as an operator's management user
        # (tagged policymaker), not the project's monitoring user.
        os.environ["RABBITMQ_MANAGEMENT_USER"], os.environ["RABBITMQ_MANAGEMENT_PASSWORD"] = \
            rabbit.AUTH
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
        import django

        django.setup()
        from queueworks.core.broker_state import queue_states
        from queueworks.core.queue_migration import queue_migrate, queues_to_migrate, results_table
        from projectname.celery import app

        sent = fill(vhost, total)
        holder = None
        if options.unacked:
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLDER, rabbit.AMQP_HOSTPORT, *rabbit.AUTH, vhost,
                 str(options.unacked), QUEUE],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
            assert holder.stdout.readline().startswith("holding"), "holder did not start"
        producer = Producer(vhost)
        producer.start()
        time.sleep(0.5)

        def pause(programs):
            if holder is not None:
                holder.terminate()
                holder.wait(timeout=30)

        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=2)
            plans = [plan for plan in queues_to_migrate(connection=connection)
                     if plan.queue == QUEUE]
            print("\n".join(plans[0].lines()))
            result = queue_migrate(plan=plans[0], connection=connection, pause=pause,
                                   resume=lambda programs: None, log=print)
        time.sleep(0.5)
        producer.stop.set()
        producer.join(timeout=10)
        state = queue_states([QUEUE])[QUEUE]
        from queueworks.core.exchange_swap import exchange_type

        exchange_after = exchange_type(QUEUE)
        found = read_all(vhost)
        expected = sent + producer.sent
        missing, extra = expected - found, found - expected
        for item in list(missing)[:5]:
            print("MISSING", item[:1], item[1:4])
        for item in list(extra)[:5]:
            print("EXTRA", item[:1], item[1:4])
        print()
        print(results_table([result]))
        print()
        rows = [
            ("messages published before", total),
            ("  of which held unacked by a consumer", options.unacked),
            ("published during the migration", sum(producer.sent.values())),
            ("  refused by the broker, published again", len(producer.refused)),
            ("messages in the queue after", sum(found.values())),
            ("missing (body+properties)", sum(missing.values())),
            ("extra / duplicated", sum(extra.values())),
            ("queue arguments after", state.arguments),
            ("exchange type after", exchange_after),
            ("migration time (s)", f"{result.seconds:.2f}"),
            ("consumers paused (s)", f"{result.paused_seconds:.2f}"),
            ("move rate (msg/s, aside+back)",
             f"{(result.moved_aside + result.moved_back) / max(result.seconds, 1e-9):.0f}"),
        ]
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            print(f"{label:<{width}}  {value}")
        return 0 if not missing and not extra else 1


if __name__ == "__main__":
    sys.exit(main())
