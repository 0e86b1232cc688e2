"""The package's URLs, for a project's urls.py to include at its root:

    path("", include("queueworks.urls")),

The health check, the Task API (``/api/v1/``), its OpenAPI schema and
Swagger UI, the ``/ops/`` dashboard and ``/metrics`` for Prometheus.  Their
URL names are global (``api-schema``, ``tasks-bulk``, ...) or namespaced by
app (``taskapi:``, ``ops:``).  Sign-in pages stay the project's (LOGIN_URL).
"""

from django.urls import include, path

from queueworks.core.views import health
from queueworks.taskapi.bulk_views import BulkTaskStartView
from queueworks.metrics.views import metrics
from queueworks.taskapi.views import DocsView as TaskApiDocsView
from queueworks.taskapi.views import SchemaView as TaskApiSchemaView

urlpatterns = [
    path("health/", health, name="health"),
    # Bulk start (queueworks/dispatch), before the Task API so tasks/<id>/ does not catch it.
    path("api/v1/tasks/bulk/", BulkTaskStartView.as_view(), name="tasks-bulk"),
    path("api/v1/", include("queueworks.taskapi.urls")),
    path("api/schema/", TaskApiSchemaView.as_view(), name="api-schema"),
    path("api/docs/", TaskApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("ops/", include("queueworks.ops.urls")),
    # Prometheus scrape endpoint (queueworks/metrics, docs/metrics.md).
    path("metrics", metrics, name="metrics"),
]
