"""Give a queue's exchange the type the topology declares (part of migrate_queues).

A classic queue is bound to a direct exchange of its name, a quorum queue to
a topic one (Celery's native delayed delivery binds through topic exchanges).
RabbitMQ changes neither an exchange's type nor its name, so the exchange is
deleted and declared again with its bindings.  migrate_queues does it while
the queue's holding queue is the alternate exchange of its exchanges (a
policy, which applies to the new exchange from its declaration), so:

* before the delete, publishes go to the exchange as it was;
* between ``exchange.delete`` and ``exchange.declare`` (two back-to-back
  commands on one channel, about a millisecond) the exchange does not exist:
  RabbitMQ refuses a publish to it with 404 NOT_FOUND and closes the
  publisher's channel.  With publisher confirms (the project's producers:
  ``confirm_publish``) the publisher gets that error instead of a
  confirmation, and whoever retries republishes; a publisher without
  confirms loses the message silently.  This window cannot be closed on the
  broker's side: ``--stop-producers`` stops beat and the web for it;
* after the declare, publishes that find no binding yet take the alternate
  exchange into the holding queue, which is moved back.
"""

from __future__ import annotations

import requests

from queueworks.core.broker_state import BrokerStateError, management_api

MANAGEMENT_TIMEOUT = 10


def _get(broker_url: str | None, *parts: str):
    api = management_api(broker_url)
    try:
        response = requests.get(api.path(*parts), auth=(api.user, api.password),
                                timeout=MANAGEMENT_TIMEOUT)
        if response.status_code == 404:
            return None
        response.raise_for_status()
    except requests.RequestException as exc:
        raise BrokerStateError(f"RabbitMQ management API at {api.url}: {exc}") from exc
    return response.json()


def exchange_type(name: str, *, broker_url: str | None = None) -> str | None:
    """The live exchange's type; None when it does not exist."""
    api = management_api(broker_url)
    found = _get(broker_url, "exchanges", api.vhost, name)
    return found["type"] if found else None


def exchange_difference(declared_queue, *, broker_url: str | None = None) -> str | None:
    """A sentence when the queue's exchange exists with another type than declared."""
    exchange = declared_queue.exchange
    if exchange is None or not exchange.name:
        return None
    live = exchange_type(exchange.name, broker_url=broker_url)
    if live is None or live == exchange.type:
        return None
    return (f"exchange {exchange.name} is {live} on the broker, declared {exchange.type}: "
            "deleted and declared again with its bindings (a publish in the ~1 ms between "
            "is refused with NOT_FOUND, not lost, for a publisher with confirms)")


def exchange_swap(connection, declared_queue, *, broker_url: str | None = None) -> list[dict]:
    """Delete the queue's exchange and declare it with the declared type,
    re-creating every binding it had except to the queue itself (declaring
    the queue binds it).  Returns the bindings re-created."""
    exchange = declared_queue.exchange
    api = management_api(broker_url)
    bindings = [binding for binding in
                (_get(broker_url, "exchanges", api.vhost, exchange.name, "bindings", "source") or [])
                + (_get(broker_url, "exchanges", api.vhost, exchange.name, "bindings",
                        "destination") or [])
                if not (binding["destination_type"] == "queue"
                        and binding["destination"] == declared_queue.name)]
    channel = connection.channel()
    try:
        channel.exchange_delete(exchange=exchange.name)
        channel.exchange_declare(exchange=exchange.name, type=exchange.type, durable=True,
                                 auto_delete=False)
        for binding in bindings:
            arguments = binding.get("arguments") or None
            if binding["destination_type"] == "queue":
                channel.queue_bind(queue=binding["destination"], exchange=binding["source"],
                                   routing_key=binding["routing_key"], arguments=arguments)
            else:
                channel.exchange_bind(destination=binding["destination"],
                                      source=binding["source"],
                                      routing_key=binding["routing_key"], arguments=arguments)
    finally:
        channel.close()
    return bindings
