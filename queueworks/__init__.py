"""queueworks: a RabbitMQ multi-queue worker system for Django projects.

Add ``*queueworks.INSTALLED_APPS`` to the project's INSTALLED_APPS, name the
project's topology in QUEUEWORKS_TOPOLOGY, and call
``queueworks.celery_app.install(app)`` in the project's ``celery.py``
(docs/add-to-your-project.md).
"""

import django

__version__ = "1.0.0"

# The package's Django apps; their labels (core, dispatch, ...) are stable.
INSTALLED_APPS = [
    "queueworks.core",
    "queueworks.reliability",
    "queueworks.taskapi",
    "queueworks.dispatch",
    "queueworks.doctor",
    "queueworks.metrics",
    "queueworks.ops",
    "queueworks.balancer",
    # API tokens, hashed (django-rest-knox, its model swapped for apitokens.ApiToken).
    "knox",
    "queueworks.apitokens",
    # Django's task API: built in from Django 6.0, the django-tasks backport before.
    *(["django_tasks"] if django.VERSION < (6, 0) else []),
]
