"""Redeclare a queue whose live type or arguments differ from the topology, losing nothing.

RabbitMQ never changes an existing queue's arguments: a worker declaring
``celery`` with ``x-dead-letter-exchange`` on a broker where ``celery``
exists without it fails with PRECONDITION_FAILED and crash-loops.  The only
remedy is delete and declare again, and deleting drops the messages, so:

1. **pause** the queue's consumers (the caller's ``pause``: supervisor stops
   those programs; a warm shutdown finishes running tasks, and their closed
   connections give every unacked message back to the queue), then wait until
   the queue has no consumer and no unacked message;
2. put a **holding queue** ``<queue>.migrate-hold`` behind a fanout exchange of
   the same name, and make it the *alternate exchange* of every exchange bound
   to the queue (a policy): producers (beat, the web, other hosts) keep
   publishing, and what finds no queue while the queue is gone lands there,
   neither lost nor duplicated;
3. **move aside**: every message from the queue to the holding queue, each
   republished with its properties (headers, priority, delivery mode,
   correlation id, ...) and acked only after the broker confirmed the copy;
4. **unbind** the queue (publishes now take the alternate exchange), let
   messages already routed land and move them too, **delete** the queue
   (``if-empty``: a message that slipped in meanwhile makes it fail, it is
   moved and the delete retried), **declare** it with the topology's arguments
   and bindings;
5. **move back**, drop the policy and the holding queue, **resume**.

A queue's exchange of another type than declared (direct for a classic
queue, topic for a quorum one) is deleted and declared again between 4 and 5
(queueworks/core/exchange_swap.py says what a publish meets meanwhile).

Re-running after an interruption finds the holding queue and finishes the
job.  A crash between a confirmed copy and the ack of its original leaves at
most that one message twice (tasks are idempotent here); none is lost.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import amqp
import requests

from queueworks.core.broker_state import (
    BrokerStateError,
    argument_differences,
    declared_queues,
    management_api,
    queue_bindings,
    queue_counts,
    queue_states,
)
from queueworks.core.broker_access import MIGRATION_HOLD_SUFFIX as HOLD_SUFFIX
from queueworks.core.exchange_swap import exchange_difference, exchange_swap

POLICY_PREFIX = "migrate-hold-"
# Above any policy an operator is likely to have; applies while the queue is gone.
POLICY_PRIORITY = 1000
# Time for a message routed before an unbind (or a policy change) to reach its
# queue; RabbitMQ delivers within milliseconds, this is a wide margin.
SETTLE_SECONDS = 1.0


class QueueMigrationError(Exception):
    """The migration cannot go on safely; the message says why and what to do."""


def hold_name(queue: str) -> str:
    return f"{queue}{HOLD_SUFFIX}"


@dataclass
class QueuePlan:
    queue: str
    differences: list[str]
    consumers: list[str]         # programs to pause
    ready: int = 0
    unacked: int = 0
    held: int | None = None      # messages already in the holding queue; None: none exists

    @property
    def resuming(self) -> bool:
        return self.held is not None

    def lines(self) -> list[str]:
        lines = [f"queue {self.queue}:"]
        lines += [f"  {text}" for text in self.differences]
        if self.resuming:
            lines.append(f"  an interrupted migration left {self.held} message(s) in "
                         f"{hold_name(self.queue)}: finish it")
        lines += [
            f"  1. pause {', '.join(self.consumers) or 'no program'} (supervisor stop; running "
            "tasks finish, unacked messages return to the queue)",
            f"  2. holding queue {hold_name(self.queue)} as alternate exchange of the queue's "
            "exchanges (producers keep publishing into it)",
            f"  3. move {self.ready} ready (+{self.unacked} unacked, once returned) message(s) "
            f"to {hold_name(self.queue)}, with publisher confirms",
            "  4. delete the queue (if empty) and declare it as the topology says",
            "  5. move the messages back; drop the holding queue and the policy; resume",
        ]
        return lines


@dataclass
class QueueResult:
    queue: str
    before: int            # ready + unacked when the migration started
    moved_aside: int
    moved_back: int
    after: int             # messages in the queue when it finished
    seconds: float
    paused_seconds: float
    steps: list[str] = field(default_factory=list)


def queues_to_migrate(*, connection, broker_url: str | None = None) -> list[QueuePlan]:
    """A plan for every topology queue that differs from its declaration or is half-migrated."""
    from queueworks.conf import TOPOLOGY

    declared = declared_queues()
    names = list(declared)
    states = queue_states(names, broker_url=broker_url)
    held = queue_counts(connection, [hold_name(name) for name in names])
    # Ready counts by passive declare: the management API's lag behind by seconds.
    counts = queue_counts(connection, names)
    plans = []
    for name in names:
        differences = argument_differences(name=name, declared=declared[name].queue_arguments,
                                           live=states[name])
        exchange = exchange_difference(declared[name], broker_url=broker_url)
        differences += [exchange] if exchange else []
        hold = held[hold_name(name)]
        if not differences and hold is None:
            continue
        state = states[name]
        plans.append(QueuePlan(
            queue=name, differences=differences,
            consumers=[worker.name for worker in TOPOLOGY.consumers_of(name)],
            ready=counts[name][0] if counts[name] else 0, unacked=state.unacked,
            held=None if hold is None else hold[0]))
    return plans


# -- AMQP helpers --------------------------------------------------------------------
def _exists(connection, name: str) -> tuple[int, int] | None:
    return queue_counts(connection, [name])[name]


def _copy(message: amqp.Message) -> amqp.Message:
    """The same body and every property (headers, priority, delivery mode, ids...)."""
    return amqp.Message(body=message.body, **message.properties)


def move_messages(connection, *, source: str, target: str) -> int:
    """Move every ready message of ``source`` to ``target`` (default exchange).

    Each copy is published with confirms; the original is acked only once the
    broker confirmed the copy, so an interruption can duplicate at most one
    message and never lose one.
    """
    return sum(move_messages_each(connection, source=source,
                                  target_of=lambda message: target).values())


def move_messages_each(connection, *, source: str,
                       target_of: Callable[[amqp.Message], str]) -> dict[str, int]:
    """``move_messages`` with each message's target chosen by ``target_of``;
    returns target -> messages moved there."""
    channel = connection.channel()
    moved: dict[str, int] = {}
    try:
        while True:
            message = channel.basic_get(queue=source, no_ack=False)
            if message is None:
                return moved
            target = target_of(message)
            # Returns once the broker confirmed the copy (raises if it refused
            # it), whatever the connection's own confirm_publish option.
            channel.basic_publish_confirm(_copy(message), exchange="", routing_key=target)
            channel.basic_ack(message.delivery_tag)
            moved[target] = moved.get(target, 0) + 1
    finally:
        channel.close()


def _delete_if_empty(connection, name: str) -> bool:
    """Delete ``name`` if it holds no message; False when one slipped in."""
    channel = connection.channel()
    try:
        channel.queue_delete(queue=name, if_empty=True)
        return True
    except connection.channel_errors:
        return False
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001 - closed by the refused delete
            pass


def _wait(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise QueueMigrationError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


# -- the alternate-exchange policy ----------------------------------------------------
def _policy_url(queue: str, broker_url: str | None) -> tuple[str, tuple[str, str]]:
    api = management_api(broker_url)
    return api.path("policies", api.vhost, POLICY_PREFIX + queue), (api.user, api.password)


def _policy_set(queue: str, exchanges: list[str], broker_url: str | None) -> None:
    url, auth = _policy_url(queue, broker_url)
    pattern = "^(" + "|".join(re.escape(name) for name in exchanges) + ")$"
    response = requests.put(url, auth=auth, timeout=10, json={
        "pattern": pattern, "apply-to": "exchanges", "priority": POLICY_PRIORITY,
        "definition": {"alternate-exchange": hold_name(queue)}})
    if not response.ok:
        raise QueueMigrationError(
            f"cannot set the alternate-exchange policy {POLICY_PREFIX + queue} "
            f"(HTTP {response.status_code}: {response.text.strip()[:200]}) as {auth[0]!r}: run it "
            "with RABBITMQ_MANAGEMENT_USER/PASSWORD of a user tagged 'policymaker', or pass "
            "--stop-producers to stop beat and the web instead")


def _policy_delete(queue: str, broker_url: str | None) -> None:
    url, auth = _policy_url(queue, broker_url)
    response = requests.delete(url, auth=auth, timeout=10)
    if response.status_code not in (200, 204, 404):
        raise QueueMigrationError(f"cannot delete policy {POLICY_PREFIX + queue}: "
                                  f"HTTP {response.status_code}")


def _policy_applied(exchange: str, queue: str, broker_url: str | None) -> bool:
    api = management_api(broker_url)
    response = requests.get(api.path("exchanges", api.vhost, exchange),
                            auth=(api.user, api.password), timeout=10)
    return response.status_code == 404 or (
        response.ok and response.json().get("policy") == POLICY_PREFIX + queue)


# -- the migration -----------------------------------------------------------------------
def queue_migrate(*, plan: QueuePlan, connection, pause: Callable[[list[str]], None],
                  resume: Callable[[list[str]], None], broker_url: str | None = None,
                  use_policy: bool = True, timeout: float = 300,
                  log: Callable[[str], None] = lambda line: None) -> QueueResult:
    """Carry out ``plan``: see the module docstring for the steps and guarantees."""
    name, hold = plan.queue, hold_name(plan.queue)
    declared = declared_queues()[name]
    started = time.monotonic()
    before_counts = _exists(connection, name)
    before = 0
    steps: list[str] = []

    def step(text: str) -> None:
        steps.append(f"{time.monotonic() - started:7.2f} s  {text}")
        log(f"{name}: {text}")

    pause(plan.consumers)
    paused_at = time.monotonic()
    step(f"paused {', '.join(plan.consumers) or 'nothing'}")
    if before_counts is not None:
        _wait(lambda: (_exists(connection, name) or (0, 0))[1] == 0, timeout=timeout,
              what=f"the consumers of queue {name} to leave (workers on other hosts? stop them)")
        _wait(lambda: _unacked(name, broker_url) == 0, timeout=timeout,
              what=f"the unacked messages of queue {name} to return")
        before = _exists(connection, name)[0]
        step(f"no consumer and no unacked message left; {before} message(s) in queue {name}")
    before += plan.held or 0
    exchanges = _source_exchanges(name, declared, broker_url, exists=before_counts is not None)
    channel = connection.channel()
    try:
        channel.exchange_declare(exchange=hold, type="fanout", durable=True, auto_delete=False)
        channel.queue_declare(queue=hold, durable=True, auto_delete=False)
        channel.queue_bind(queue=hold, exchange=hold, routing_key="")
    finally:
        channel.close()
    if use_policy:
        _policy_set(name, exchanges, broker_url)
        for exchange in exchanges:
            _wait(lambda exchange=exchange: _policy_applied(exchange, name, broker_url),
                  timeout=30, what=f"the policy on exchange {exchange}")
        step(f"{hold} is the alternate exchange of {', '.join(exchanges)}")
    moved_aside = 0
    if _exists(connection, name) is not None and argument_differences(
            name=name, declared=declared.queue_arguments,
            live=queue_states([name], broker_url=broker_url)[name]):
        moved_aside = move_messages(connection, source=name, target=hold)
        # Unbind first: from here on every publish finds no route and takes
        # the alternate exchange.  A message routed just before is still on
        # its way to the queue; a delete racing it would drop it, so let it
        # land, then move it too.
        _unbind_all(connection, name, broker_url)
        time.sleep(SETTLE_SECONDS)
        moved_aside += move_messages(connection, source=name, target=hold)
        while not _delete_if_empty(connection, name):
            moved_aside += move_messages(connection, source=name, target=hold)
        step(f"moved {moved_aside} message(s) aside; deleted queue {name}")
    if exchange_difference(declared, broker_url=broker_url):
        rebound = exchange_swap(connection, declared, broker_url=broker_url)
        step(f"exchange {declared.exchange.name} deleted and declared {declared.exchange.type}"
             f" ({len(rebound)} other binding(s) re-created)")
    channel = connection.channel()
    try:
        declared.bind(channel).declare()
    finally:
        channel.close()
    step(f"declared queue {name} with {declared.queue_arguments or 'no arguments'}")
    moved_back = move_messages(connection, source=hold, target=name)
    if use_policy:
        _policy_delete(name, broker_url)
        # As above: what the alternate exchange routed just before lands first.
        time.sleep(SETTLE_SECONDS)
        moved_back += move_messages(connection, source=hold, target=name)
    while not _delete_if_empty(connection, hold):
        moved_back += move_messages(connection, source=hold, target=name)
    channel = connection.channel()
    try:
        channel.exchange_delete(exchange=hold)
    finally:
        channel.close()
    after = _exists(connection, name)[0]
    step(f"moved {moved_back} message(s) back; {after} in queue {name}")
    resume(plan.consumers)
    paused_seconds = time.monotonic() - paused_at
    step(f"resumed {', '.join(plan.consumers) or 'nothing'}")
    return QueueResult(queue=name, before=before, moved_aside=moved_aside, moved_back=moved_back,
                       after=after, seconds=time.monotonic() - started,
                       paused_seconds=paused_seconds, steps=steps)


def _unbind_all(connection, name: str, broker_url: str | None) -> None:
    channel = connection.channel()
    try:
        for binding in queue_bindings(name, broker_url=broker_url):
            channel.queue_unbind(queue=name, exchange=binding["source"],
                                 routing_key=binding["routing_key"],
                                 arguments=binding.get("arguments") or None)
    finally:
        channel.close()


def _unacked(name: str, broker_url: str | None) -> int:
    try:
        return queue_states([name], broker_url=broker_url)[name].unacked
    except BrokerStateError:
        return 0


def _source_exchanges(name: str, declared, broker_url: str | None, *, exists: bool) -> list[str]:
    """Every exchange that routes to the queue now, and the declared one."""
    sources = {declared.exchange.name} if declared.exchange and declared.exchange.name else set()
    if exists:
        sources |= {binding["source"] for binding in queue_bindings(name, broker_url=broker_url)}
    return sorted(sources)


def results_table(results: list[QueueResult]) -> str:
    header = (f"{'queue':<14} {'before':>7} {'aside':>7} {'back':>7} {'after':>7} "
              f"{'time s':>7} {'paused s':>8}")
    rows = [f"{r.queue:<14} {r.before:>7} {r.moved_aside:>7} {r.moved_back:>7} {r.after:>7} "
            f"{r.seconds:>7.2f} {r.paused_seconds:>8.2f}" for r in results]
    return "\n".join([header, *rows])

