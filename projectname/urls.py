from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path

from queueworks.core.views import health
from queueworks.taskapi.bulk_views import BulkTaskStartView
from queueworks.metrics.views import metrics
from queueworks.taskapi.views import DocsView as TaskApiDocsView
from queueworks.taskapi.views import SchemaView as TaskApiSchemaView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Sign-in for everyone (the admin's own accepts staff only); attempts are
    # limited by django-axes.
    path("accounts/login/", LoginView.as_view(template_name="ops/login.html"), name="login"),
    path("health/", health, name="health"),
    # Task API (queueworks/taskapi): JSON endpoints, OpenAPI 3 schema, Swagger UI.
    # Bulk start (queueworks/dispatch), before the Task API so tasks/<id>/ does not catch it.
    path("api/v1/tasks/bulk/", BulkTaskStartView.as_view(), name="tasks-bulk"),
    path("api/v1/", include("queueworks.taskapi.urls")),
    path("api/schema/", TaskApiSchemaView.as_view(), name="api-schema"),
    path("api/docs/", TaskApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("ops/", include("queueworks.ops.urls")),
    # Prometheus scrape endpoint (queueworks/metrics, docs/metrics.md).
    path("metrics", metrics, name="metrics"),
]
