"""Helpers shared by the token commands."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management import CommandError


def user_named(username: str):
    model = get_user_model()
    try:
        return model._default_manager.get_by_natural_key(username)
    except model.DoesNotExist:
        raise CommandError(f"no user {username!r}") from None


def positive(option: str, value: int | None) -> int | None:
    if value is not None and value <= 0:
        raise CommandError(f"{option} must be a positive number, not {value}")
    return value
