"""balancer_pool_grow against a stand-in worker state: Celery's pool_grow, then
the pool forks at once (the live timing: test_live_pool_grow.py)."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

from celery.worker import control

from queueworks.balancer.control import COMMAND, balancer_pool_grow


def worker_state(*, autoscaler=None):
    calls = []
    pool = SimpleNamespace(grow=lambda n: calls.append(("grow", n)),
                           maintain_pool=lambda: calls.append(("maintain_pool",)))
    consumer = SimpleNamespace(pool=pool, controller=SimpleNamespace(autoscaler=autoscaler),
                               _update_prefetch_count=lambda n: calls.append(("prefetch", n)))
    return SimpleNamespace(consumer=consumer), calls


def test_registered_as_a_control_command_with_celerys_arguments():
    assert control.Panel.data[COMMAND] is balancer_pool_grow
    assert control.Panel.meta[COMMAND].args == control.Panel.meta["pool_grow"].args


def test_grows_as_celery_does_then_forks_at_once():
    state, calls = worker_state()
    assert balancer_pool_grow(state, n=3) == control.pool_grow(worker_state()[0], n=3)
    assert calls == [("grow", 3), ("prefetch", 3), ("maintain_pool",)]


def test_a_refused_grow_forks_nothing():
    state, calls = worker_state(autoscaler=mock.Mock())
    answer = balancer_pool_grow(state, n=1)
    assert "error" in answer and "autoscale" in answer["error"]
    assert calls == []
