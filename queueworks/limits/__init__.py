"""Limits across every worker on every host: rate limits, concurrency limits,
fair sharing between the callers of one queue, and unique tasks.

Declared per route in the topology (``Route(rate_limit=..., concurrency_limit=...,
fair_share=..., unique=...)``, the classes in ``declaration.py``) and enforced
with shared state in the project's database.
"""
