"""Dramatiq with its RabbitMQ broker, defaults otherwise (bench/throughput.py).

The broker URL comes from BENCH_AMQP_URL (a throw-away vhost; no default user)."""

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

if not os.environ.get("BENCH_AMQP_URL"):
    raise RuntimeError("BENCH_AMQP_URL is not set: run the Dramatiq app through bench/throughput.py")
broker = RabbitmqBroker(url=os.environ["BENCH_AMQP_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor
def noop(n=0):
    return None
