"""Gunicorn reads this file from the working directory (the project root).

The settings load in the master before any worker forks, so the production
profile's refusal (queueworks/core/profiles.py) stops the web program with its
message and a non-zero exit, instead of workers failing one after another.
"""


def on_starting(server):
    from django.conf import settings

    settings.INSTALLED_APPS  # noqa: B018  (loading the settings applies the profile)
