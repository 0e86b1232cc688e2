"""The system check refuses a rate or concurrency limit that cannot work."""

from __future__ import annotations

from types import SimpleNamespace

from queueworks.core.topology import Queue, Route, Topology, Worker
from queueworks.limits.checks_rate_concurrency import check_limits
from queueworks.limits.declaration import ConcurrencyLimit, RateLimit


def _task(function):
    return SimpleNamespace(run=function)


def send(tenant_id, message=""):
    return None


def anything(**kwargs):
    return None


TASKS = {"app.send": _task(send), "app.anything": _task(anything)}


def topology(*routes):
    return Topology(queues=(Queue("q", "q"),), workers=(Worker("w", ("q",), time_limit=90),),
                    routes=routes, schedules=())


def ids(*routes):
    return sorted(error.id for error in check_limits(topology(*routes), TASKS))


def test_a_sound_declaration_passes():
    assert ids(Route("app.send", "q", rate_limit=RateLimit(10, 1.0, burst=2, key="tenant_id"),
                     concurrency_limit=ConcurrencyLimit(3, key="tenant_id")),
               Route("app.anything", "q", concurrency_limit=ConcurrencyLimit(1, key="x"))) == []


def test_a_key_the_task_does_not_take_is_refused_naming_it():
    [error] = check_limits(topology(
        Route("app.send", "q", rate_limit=RateLimit(10, key="customer_id"))), TASKS)
    assert error.id == "queueworks_limits.E001"
    assert "'customer_id'" in error.msg and "tenant_id, message" in error.msg


def test_numbers_that_are_not_positive_are_refused():
    assert ids(Route("app.send", "q", rate_limit=RateLimit(0, 1.0))) == ["queueworks_limits.E002"]
    assert ids(Route("app.send", "q", rate_limit=RateLimit(1, 0))) == ["queueworks_limits.E002"]
    assert ids(Route("app.send", "q", rate_limit=RateLimit(1, 1, burst=-1))) == [
        "queueworks_limits.E002"]
    assert ids(Route("app.send", "q", concurrency_limit=ConcurrencyLimit(0))) == [
        "queueworks_limits.E002"]


def test_a_limit_on_a_task_that_is_not_registered_is_refused():
    assert ids(Route("app.missing", "q", rate_limit=RateLimit(1))) == ["queueworks_limits.E003"]


def test_a_lease_shorter_than_the_time_limit_is_refused():
    assert ids(Route("app.send", "q", concurrency_limit=ConcurrencyLimit(1, lease_seconds=30))) \
        == ["queueworks_limits.E004"]
    assert ids(Route("app.send", "q", time_limit=20,
                     concurrency_limit=ConcurrencyLimit(1, lease_seconds=30))) == []


def test_the_project_passes_its_own_check():
    from django.core.management import call_command

    call_command("check")  # raises SystemCheckError on any error
