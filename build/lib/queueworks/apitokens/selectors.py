"""Read API tokens (never their keys: only hashes are stored)."""

from __future__ import annotations

from django.db.models import QuerySet

from queueworks.apitokens.models import ApiToken


def api_tokens_list(*, user=None) -> QuerySet[ApiToken]:
    tokens = ApiToken.objects.select_related("user")
    return tokens.filter(user=user) if user is not None else tokens.all()
