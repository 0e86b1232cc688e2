"""A queue's exchange of another type than declared is named in the plan
(the live replacement: tests/bench/test_benchmarks_tiny.py on the 4.x pass)."""

from kombu import Exchange, Queue

from queueworks.core import exchange_swap


def _queue(exchange_type: str) -> Queue:
    return Queue("celery", Exchange("celery", type=exchange_type, durable=True),
                 routing_key="celery")


def test_a_direct_exchange_where_topic_is_declared_is_a_difference(monkeypatch):
    monkeypatch.setattr(exchange_swap, "exchange_type", lambda name, broker_url=None: "direct")
    text = exchange_swap.exchange_difference(_queue("topic"))
    assert text.startswith("exchange celery is direct on the broker, declared topic")
    assert "NOT_FOUND" in text


def test_the_same_type_or_no_exchange_yet_is_no_difference(monkeypatch):
    monkeypatch.setattr(exchange_swap, "exchange_type", lambda name, broker_url=None: "topic")
    assert exchange_swap.exchange_difference(_queue("topic")) is None
    monkeypatch.setattr(exchange_swap, "exchange_type", lambda name, broker_url=None: None)
    assert exchange_swap.exchange_difference(_queue("topic")) is None
    assert exchange_swap.exchange_difference(Queue("plain")) is None
