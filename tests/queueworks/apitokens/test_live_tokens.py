"""Tokens and the client's address through the live system's gunicorn, broker
and workers: what a client behind the shipped nginx meets."""

import pytest
import requests

from tests.queueworks.taskapi.conftest import ApiUser, _make_user

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DIAGNOSE = "queueworks.taskapi.tasks.diagnose"


def test_legacy_and_hashed_tokens_start_tasks_and_revocation_stops_them(live_http):
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from queueworks.apitokens.models import ApiToken
    from queueworks.apitokens.services import api_token_create

    operator = _make_user("live-token-operator", operator=True)
    legacy = Token.objects.create(user=operator.user).key
    for key in (legacy, operator.token):
        api = live_http(ApiUser(user=operator.user, token=key))
        response = api.post("/api/v1/tasks/", {"task": DIAGNOSE, "kwargs": {"message": "hi"}})
        assert response.status_code == 202, response.text
        done = api.wait_state(response.json()["task_id"], {"SUCCESS", "FAILURE"}, timeout=60)
        assert done["state"] == "SUCCESS" and done["result"]["message"] == "hi"
    # The legacy key is now stored hashed only.
    assert not Token.objects.exists()
    assert ApiToken.objects.filter(user=operator.user, name="legacy").exists()
    _, spare = api_token_create(user=operator.user, name="spare")
    call_command("apitoken_revoke", operator.user.username, "--name", "tests")
    refused = live_http(operator).get("/api/v1/tasks/")
    assert refused.status_code == 401 and "detail" in refused.json()
    assert live_http(ApiUser(user=operator.user, token=spare)).get("/api/v1/tasks/").status_code == 200


def _login(base: str, *, password: str, forwarded_for: str) -> int:
    session = requests.Session()
    session.get(base + "/accounts/login/", timeout=30)
    return session.post(base + "/accounts/login/", timeout=30, allow_redirects=False, data={
        "username": "live-ann", "password": password,
        "csrfmiddlewaretoken": session.cookies["csrftoken"],
    }, headers={"X-Forwarded-For": forwarded_for}).status_code


def test_behind_the_local_proxy_a_guesser_locks_out_only_their_own_address(live_system):
    from django.conf import settings
    from django.contrib.auth.models import User

    User.objects.create_user("live-ann", password="live-ann-pass-9x!")
    base = f"http://127.0.0.1:{live_system.web_port}"  # the suite's requests come from loopback
    statuses = [_login(base, password="wrong", forwarded_for="198.51.100.7")
                for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses
    assert _login(base, password="live-ann-pass-9x!", forwarded_for="198.51.100.7") == 429
    assert _login(base, password="live-ann-pass-9x!", forwarded_for="203.0.113.20") == 302
