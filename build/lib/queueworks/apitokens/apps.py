from django.apps import AppConfig


class ApiTokensConfig(AppConfig):
    name = "queueworks.apitokens"
    label = "apitokens"
    verbose_name = "API tokens"

    def ready(self):
        # The token model check; the OpenAPI scheme registers itself on import.
        from celery.signals import task_postrun

        from queueworks.apitokens import checks, schema  # noqa: F401
        from queueworks.apitokens.services import prune_after_backend_cleanup

        task_postrun.connect(prune_after_backend_cleanup, weak=False,
                             dispatch_uid="apitokens.prune_expired")
