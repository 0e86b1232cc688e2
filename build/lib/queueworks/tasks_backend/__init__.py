"""Django's task API (``django.tasks``, or the django-tasks backport on
Django 5.2) on the topology's queues: see ``backend.py``."""

from queueworks.tasks_backend.backend import QueueworksBackend

__all__ = ["QueueworksBackend"]
