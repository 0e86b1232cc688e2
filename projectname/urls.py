from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Sign-in for everyone (the admin's own accepts staff only); attempts are
    # limited by django-axes.
    path("accounts/login/", LoginView.as_view(template_name="ops/login.html"), name="login"),
    # The package's pages: /health/, the Task API (/api/v1/, /api/schema/,
    # /api/docs/), /ops/ and /metrics (queueworks/urls.py).
    path("", include("queueworks.urls")),
]
