"""knox must use this app's token model, or tokens would lose their names."""

from django.conf import settings
from django.core.checks import Error, Tags, register

MODEL = "apitokens.ApiToken"


@register(Tags.security)
def check_token_model(app_configs=None, **kwargs):
    configured = getattr(settings, "KNOX_TOKEN_MODEL", None)
    if configured == MODEL:
        return []
    return [Error(f"KNOX_TOKEN_MODEL must be {MODEL!r}, not {configured!r}.",
                  hint="Set it in the project's settings (docs/task-api.md, \"Tokens\").",
                  id="queueworks.apitokens.E001")]
