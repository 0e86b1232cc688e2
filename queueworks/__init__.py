"""queueworks: a RabbitMQ multi-queue worker system for Django projects.

Add ``*queueworks.INSTALLED_APPS`` to the project's INSTALLED_APPS, name the
project's topology in QUEUEWORKS_TOPOLOGY, and call
``queueworks.celery_app.install(app)`` in the project's ``celery.py``
(docs/add-to-your-project.md).
"""

import django

__version__ = "1.0.0"

# The package's Django apps, after the ones they need (results and schedules
# in the database, the Task API on Django REST framework and its OpenAPI
# schema); their labels (core, dispatch, ...) are stable.  A project that
# already lists one of the needed apps drops its own entry: Django refuses a
# label installed twice.
# How the Task API's clients authenticate (REST_FRAMEWORK's
# DEFAULT_AUTHENTICATION_CLASSES): hashed API tokens first, so an anonymous
# request gets 401 with ``WWW-Authenticate: Token``, then a signed-in session.
AUTHENTICATION_CLASSES = [
    "queueworks.apitokens.authentication.ApiTokenAuthentication",
    "rest_framework.authentication.SessionAuthentication",
]

INSTALLED_APPS = [
    "django_celery_results",
    "django_celery_beat",
    "rest_framework",
    "drf_spectacular",
    "queueworks.core",
    "queueworks.reliability",
    "queueworks.limits",
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
