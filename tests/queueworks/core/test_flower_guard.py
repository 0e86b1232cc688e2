"""What Flower's start endpoints accept (queueworks/core/flower.py), without a server."""

import json

from queueworks.core.flower import APPLY_OPTIONS, START_OPTIONS, start_request_errors


def body(**payload) -> bytes:
    return json.dumps(payload).encode()


def test_an_allowlisted_task_with_valid_arguments_goes_ahead():
    assert start_request_errors("queueworks.core.tasks.probe", body(args=["t"]), START_OPTIONS) is None
    assert start_request_errors("queueworks.core.tasks.probe", body(kwargs={"token": "t"}, timeout=5),
                                APPLY_OPTIONS) is None


def test_test_only_and_unlisted_tasks_are_forbidden():
    for name in ("apps.testing.tasks.fault_crash", "apps.testing.tasks.noop", "os.system"):
        status, errors = start_request_errors(name, body(args=[]), START_OPTIONS)
        assert status == 403 and "allowlist" in errors["task"][0]


def test_bad_input_is_a_400_naming_the_field():
    assert start_request_errors("queueworks.core.tasks.probe", b"[1]", START_OPTIONS) == (
        400, {"body": ["must be a JSON object"]})
    status, errors = start_request_errors("queueworks.core.tasks.probe",
                                          body(args=["t"], routing_key="x", timeout=1), START_OPTIONS)
    assert status == 400 and set(errors) == {"routing_key", "timeout"}
    status, errors = start_request_errors("queueworks.core.tasks.probe", body(args=["t"], queue="bulk"),
                                          START_OPTIONS)
    assert status == 400 and "queue" in errors


def test_a_deeply_nested_body_is_a_400_naming_the_body():
    deep = b"[" * 100_000 + b"]" * 100_000
    status, errors = start_request_errors("queueworks.core.tasks.probe", b'{"args": ' + deep + b"}",
                                          START_OPTIONS)
    assert status == 400 and "body" in errors


def test_the_guarded_patterns_carry_flowers_url_prefix():
    from queueworks.core.flower import guarded_handlers

    for prefix in ("flower", "/flower/", "ops/flower"):
        patterns = [pattern for pattern, _ in guarded_handlers(url_prefix=prefix)]
        expected = "/" + prefix.strip("/")
        assert patterns and all(pattern.startswith(expected + "/api/") for pattern in patterns), patterns
    assert [pattern for pattern, _ in guarded_handlers(url_prefix="")] == \
        [pattern for pattern, _ in guarded_handlers()]
