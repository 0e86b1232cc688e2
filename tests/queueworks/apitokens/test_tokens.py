"""API tokens: stored as a hash, with a name and an expiry, revocable, several
per user; DRF's clear-text tokens keep working until they are converted."""

import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import models
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[3] / "docs"
PROBE = "/api/v1/tasks/allowed/"  # any authenticated user may read it
KEY = re.compile(r"\b[0-9a-f]{40,}\b")


@pytest.fixture
def ann(django_user_model):
    return django_user_model.objects.create_user("ann")


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _new_key(*args) -> str:
    keys = KEY.findall(_run(*args))
    assert len(keys) == 1, keys
    return keys[0]


def _status(key: str) -> int:
    return Client().get(PROBE, HTTP_AUTHORIZATION=f"Token {key}").status_code


def _rows_holding(text: str) -> list[str]:
    """Every stored row, in any table, with a text column that contains ``text``."""
    found = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, (models.CharField, models.TextField)):
                if model._default_manager.filter(**{f"{field.name}__contains": text}).exists():
                    found.append(f"{model._meta.db_table}.{field.column}")
    return found


def test_the_documented_way_to_create_a_token_stores_no_usable_key(ann):
    # The command docs/task-api.md gives a new user.
    command = re.search(r"manage\.py (\w+) ann\b", (DOCS / "task-api.md").read_text()).group(1)
    key = _new_key(command, "ann")
    assert _status(key) == 200
    assert _rows_holding(key) == []
    # What is stored cannot be sent back as the key.
    token = apps.get_model("apitokens", "ApiToken").objects.get(user=ann)
    assert key not in (token.digest, token.token_key)
    assert _status(token.token_key) == 401 and _status(token.digest) == 401


def test_an_expired_token_is_refused(ann):
    from queueworks.apitokens.services import api_token_create

    token, key = api_token_create(user=ann, name="ci", ttl=timedelta(days=1))
    assert _status(key) == 200
    type(token).objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    response = Client().get(PROBE, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json" and "detail" in response.json()
    assert response["WWW-Authenticate"] == "Token"


def test_several_tokens_each_revocable_by_name(ann):
    laptop = _new_key("apitoken_create", "ann", "--name", "laptop")
    ci = _new_key("apitoken_create", "ann", "--name", "ci", "--days", "7")
    assert _status(laptop) == 200 and _status(ci) == 200
    listing = _run("apitoken_list", "ann")
    assert "laptop" in listing and "ci" in listing
    assert laptop not in listing and ci not in listing
    assert "revoked 1" in _run("apitoken_revoke", "ann", "--name", "laptop")
    response = Client().get(PROBE, HTTP_AUTHORIZATION=f"Token {laptop}")
    assert response.status_code == 401 and "detail" in response.json()
    assert _status(ci) == 200


def test_rotation_replaces_a_token_after_a_grace_period(ann):
    old = _new_key("apitoken_create", "ann", "--name", "ci")
    new = _new_key("apitoken_rotate", "ann", "--name", "ci", "--grace-minutes", "10")
    assert new != old and _status(new) == 200 and _status(old) == 200  # grace: both work
    token_model = apps.get_model("apitokens", "ApiToken")
    expiries = sorted(token_model.objects.filter(user=ann, name="ci").values_list("expiry", flat=True))
    assert expiries[0] <= timezone.now() + timedelta(minutes=10)
    newest = _new_key("apitoken_rotate", "ann", "--name", "ci")  # no grace: the old ones stop now
    assert _status(old) == 401 and _status(new) == 401 and _status(newest) == 200


def test_bad_input_is_named(ann):
    with pytest.raises(CommandError, match="no user 'bob'"):
        _run("apitoken_create", "bob", "--name", "ci")
    with pytest.raises(CommandError, match="--days"):
        _run("apitoken_create", "ann", "--name", "ci", "--days", "0")
    with pytest.raises(CommandError, match="--name"):
        _run("apitoken_rotate", "ann", "--name", "nothing-by-this-name")


def test_a_legacy_token_keeps_working_and_is_hashed_on_first_use(ann):
    from rest_framework.authtoken.models import Token

    legacy = Token.objects.create(user=ann).key
    assert _status(legacy) == 200
    assert not Token.objects.exists() and _rows_holding(legacy) == []
    converted = apps.get_model("apitokens", "ApiToken").objects.get(user=ann)
    assert converted.name == "legacy" and converted.expiry > timezone.now()
    assert _status(legacy) == 200  # the client changes nothing


def test_the_migration_command_converts_every_legacy_token(django_user_model, ann):
    from rest_framework.authtoken.models import Token

    bob = django_user_model.objects.create_user("bob")
    keys = [Token.objects.create(user=user).key for user in (ann, bob)]
    assert "converted 2" in _run("apitoken_migrate_legacy")
    assert not Token.objects.exists()
    assert all(_rows_holding(key) == [] for key in keys)
    assert [_status(key) for key in keys] == [200, 200]
    assert "converted 0" in _run("apitoken_migrate_legacy")


def test_an_unknown_key_is_refused(ann):
    for key in ("0" * 40, "0" * 64, "caf\xe9"):  # the last is not UTF-8 on the wire
        response = Client().get(PROBE, HTTP_AUTHORIZATION=f"Token {key}")
        assert response.status_code == 401 and "detail" in response.json(), key


def test_the_token_model_must_be_this_apps(settings):
    from queueworks.apitokens.checks import check_token_model

    assert check_token_model() == []
    settings.KNOX_TOKEN_MODEL = "knox.AuthToken"
    assert [e.id for e in check_token_model()] == ["queueworks.apitokens.E001"]


def test_a_token_costs_one_query_and_expired_ones_are_pruned_daily(ann, django_assert_num_queries):
    from queueworks.apitokens.authentication import ApiTokenAuthentication
    from queueworks.apitokens.models import ApiToken
    from queueworks.apitokens.services import api_token_create, prune_after_backend_cleanup

    _, key = api_token_create(user=ann, name="ci")
    stale, _ = api_token_create(user=ann, name="old")
    ApiToken.objects.filter(pk=stale.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    with django_assert_num_queries(1):  # the token and its user, in one statement
        user, _ = ApiTokenAuthentication().authenticate_credentials(key.encode())
    assert user == ann
    prune_after_backend_cleanup(sender=type("Task", (), {"name": "celery.backend_cleanup"}))
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["ci"]
