"""``Authorization: Token <key>``: a hashed API token (knox), or a DRF
authtoken key still stored in clear, which is converted on its first use."""

from __future__ import annotations

import logging

from django.apps import apps
from django.db import IntegrityError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from rest_framework import exceptions

from queueworks.apitokens.models import ApiToken
from queueworks.apitokens.services import legacy_token_convert

logger = logging.getLogger(__name__)


class ApiTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, token: bytes):
        try:
            key = token.decode("utf-8")
        except UnicodeDecodeError:
            # knox decodes without a guard: a stray byte would be a 500.
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        try:
            return super().authenticate_credentials(token)
        except exceptions.AuthenticationFailed:
            converted = _convert_legacy(key)
            if converted is None:
                raise
            return self.validate_user(converted)

    def _cleanup_token(self, auth_token) -> bool:
        """Refuse (and delete) this token if it has expired.  knox also reads
        and prunes every other token of the user on each request, one query
        more per request; expired tokens are pruned daily instead
        (``api_tokens_prune_expired``)."""
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


def _convert_legacy(key: str) -> ApiToken | None:
    if not apps.is_installed("rest_framework.authtoken"):
        return None
    from rest_framework.authtoken.models import Token

    legacy = Token.objects.filter(key=key).first()
    if legacy is None:
        return None
    try:
        token = legacy_token_convert(legacy=legacy)
    except IntegrityError:
        # Another request converted it first.
        token = ApiToken.objects.filter(digest=hash_token(key)).first()
        if token is None:
            return None
    logger.warning("API token of user %s was stored in clear: now hashed as %r, expires %s",
                   token.user, token.name, token.expiry)
    return ApiToken.objects.select_related("user").get(pk=token.pk)
