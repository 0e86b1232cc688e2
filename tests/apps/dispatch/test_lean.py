"""apps/dispatch/lean.py pieces that can be checked without a worker (the
lean path itself runs in tests/apps/dispatch/test_bulk_lane.py, live)."""

import pytest
from celery.app.task import Context

from apps.dispatch import lean

# The test process never installs the replacement: this is Celery's own.
CELERY_CUSTOM_HEADERS = Context.__dict__["_get_custom_headers"]

REQUEST = {
    "lang": "py", "task": "apps.testing.tasks.noop", "id": "i", "root_id": "i",
    "parent_id": None, "group": None, "argsrepr": "()", "kwargsrepr": "{'n': 1}",
    "origin": "gen1@host", "ignore_result": True, "args": [], "kwargs": {"n": 1},
    "hostname": "bulk_worker_1@host", "is_eager": False, "properties": {},
    "reply_to": "", "correlation_id": "i", "delivery_info": {"routing_key": "bulk"},
    "callbacks": None, "errbacks": None, "chain": None, "chord": None,
}


@pytest.mark.parametrize("extra", [
    {},
    {"taskapi_recorded": True},
    {"x-custom": 1, "another": [1, 2], "compression": "gzip", "stamps": {}},
    {"headers": None, "tenant": "a"},
])
def test_custom_headers_are_celerys_own(extra):
    assert CELERY_CUSTOM_HEADERS is not lean._custom_headers
    request = {**REQUEST, **extra}
    context = Context()
    expected = CELERY_CUSTOM_HEADERS(context, request, args=[], called_directly=False,
                                     kwargs={"n": 1})
    got = lean._custom_headers(context, request, args=[], called_directly=False,
                               kwargs={"n": 1})
    assert got == expected
    assert got is None or list(got) == list(expected)  # same keys, same order


def test_install_replaces_the_method_for_new_contexts():
    try:
        lean.install_custom_headers()
        lean.install_custom_headers()  # idempotent
        context = Context({**REQUEST, "tenant": "a"}, args=[], called_directly=False)
        assert context.headers == {"tenant": "a"}
        assert Context(REQUEST).headers is None
    finally:
        Context._get_custom_headers = CELERY_CUSTOM_HEADERS
