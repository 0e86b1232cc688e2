"""Create, revoke, rotate API tokens and convert DRF's clear-text ones.

A key is returned once, by ``api_token_create`` / ``api_token_rotate``; only
its hash is stored, so a lost key cannot be shown again, only replaced."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import CONSTANTS, knox_settings

from queueworks.apitokens.models import LEGACY_NAME, ApiToken

_DEFAULT = object()


def api_token_create(*, user, name: str, ttl: timedelta | None = _DEFAULT) -> tuple[ApiToken, str]:
    """A new token for ``user``; ``ttl`` defaults to ``REST_KNOX["TOKEN_TTL"]``
    (None: never expires).  Returns the row and the key, which is not stored."""
    if ttl is _DEFAULT:
        ttl = knox_settings.TOKEN_TTL
    return ApiToken.objects.create(user=user, expiry=ttl, name=name)


def api_token_revoke(*, user, name: str) -> int:
    """Revoke (delete) every token of ``user`` called ``name``; returns how many."""
    deleted, _ = ApiToken.objects.filter(user=user, name=name).delete()
    return deleted


@transaction.atomic
def api_token_rotate(*, user, name: str, grace: timedelta = timedelta(0)) -> tuple[ApiToken, str]:
    """A new token called ``name``; the old ones of that name end after ``grace``
    (at once without one), so a client can switch keys without an outage.
    Raises ``ApiToken.DoesNotExist`` when the user has no token of that name."""
    old = ApiToken.objects.filter(user=user, name=name)
    if not old.exists():
        raise ApiToken.DoesNotExist(f"no token called {name!r}")
    if grace > timedelta(0):
        ends = timezone.now() + grace
        old.filter(expiry__isnull=True).update(expiry=ends)
        old.filter(expiry__gt=ends).update(expiry=ends)
    else:
        old.delete()
    return api_token_create(user=user, name=name)


def api_tokens_prune_expired() -> int:
    """Delete every expired token (refused anyway); returns how many."""
    deleted, _ = ApiToken.objects.filter(expiry__lt=timezone.now()).delete()
    return deleted


def prune_after_backend_cleanup(sender=None, **kwargs) -> None:
    """Celery's daily ``celery.backend_cleanup`` also prunes expired tokens."""
    if getattr(sender, "name", None) == "celery.backend_cleanup":
        api_tokens_prune_expired()


@transaction.atomic
def legacy_token_convert(*, legacy) -> ApiToken:
    """Store a DRF authtoken key as a hashed token (same key, so its client
    changes nothing; it expires ``TOKEN_TTL`` from now) and delete the clear row."""
    key = legacy.key
    expiry = knox_settings.TOKEN_TTL
    token = ApiToken(
        digest=hash_token(key), token_key=key[:CONSTANTS.TOKEN_KEY_LENGTH], user_id=legacy.user_id,
        name=LEGACY_NAME, expiry=timezone.now() + expiry if expiry is not None else None,
    )
    token.save(force_insert=True)
    legacy.delete()
    return token


def legacy_tokens_convert() -> int:
    """Convert every DRF authtoken key still stored in clear; returns how many."""
    from rest_framework.authtoken.models import Token

    converted = 0
    for legacy in Token.objects.all().iterator():
        legacy_token_convert(legacy=legacy)
        converted += 1
    return converted
