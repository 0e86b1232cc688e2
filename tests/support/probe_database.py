"""The database of a probe script run in processes of its own: Django set up
on ``database_url`` with just the tables the probe writes (no migrations)."""

from __future__ import annotations

import os


def probe_tables_create(database_url: str, *model_paths: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.apps import apps
    from django.db import connection

    with connection.schema_editor() as editor:
        for path in model_paths:
            editor.create_model(apps.get_model(path))
    connection.close()
