"""The Celery application, configured from Django settings (CELERY_* names),
in Celery's four steps for Django plus the package's one."""

import os

from celery import Celery

from queueworks.celery_app import install

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")

app = Celery("projectname")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Delivery limits, dead letters, prefetch headroom, task-event leases, timer
# compaction and CPU policies (queueworks/celery_app.py).
install(app)
app.autodiscover_tasks()
