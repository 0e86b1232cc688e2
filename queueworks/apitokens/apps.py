from django.apps import AppConfig


class ApiTokensConfig(AppConfig):
    name = "queueworks.apitokens"
    label = "apitokens"
    verbose_name = "API tokens"

    def ready(self):
        # The token model check; the OpenAPI scheme registers itself on import.
        from queueworks.apitokens import checks, schema  # noqa: F401
