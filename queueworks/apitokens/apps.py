from django.apps import AppConfig


class ApiTokensConfig(AppConfig):
    name = "queueworks.apitokens"
    label = "apitokens"
    verbose_name = "API tokens"

    def ready(self):
        from queueworks.apitokens import checks  # noqa: F401
