"""The API token: knox's hashed token (digest, the key's first characters to
find it, user, created, expiry) plus a name, so a user can tell several
apart and revoke one.  ``KNOX_TOKEN_MODEL = "apitokens.ApiToken"`` swaps it in."""

from django.db import models
from knox.models import AbstractAuthToken

# What a converted DRF authtoken key is called.
LEGACY_NAME = "legacy"


class ApiToken(AbstractAuthToken):
    name = models.CharField(max_length=100, help_text="What the token is for (a client, a host).")

    class Meta:
        verbose_name = "API token"
        ordering = ["user_id", "name", "-created"]

    def __str__(self) -> str:
        return f"{self.user} / {self.name}"
