"""Drop the table of knox's own token model, when it holds nothing.

KNOX_TOKEN_MODEL swaps in this app's ApiToken, yet knox's migrations create
``knox_authtoken`` anyway (they predate its swappable model), with a foreign
key to the user table.  No code reads or writes it; Django leaves a
swapped-out model's table out of ``flush``, so on PostgreSQL that foreign key
made every flush (each transactional test's teardown, ``manage.py flush``)
refuse to truncate the user table.

A project that used knox before adopting the package may still have tokens in
it: those rows are kept (and a warning says how to move on), never dropped.
"""

import warnings

from django.db import migrations

TABLE = "knox_authtoken"


def drop_if_empty(apps, schema_editor):
    connection = schema_editor.connection
    if TABLE not in connection.introspection.table_names():
        return
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {TABLE} LIMIT 1")
        if cursor.fetchone() is not None:
            warnings.warn(f"{TABLE} still holds knox tokens, which the package's API tokens "
                          "replace: it is kept.  Issue new tokens (manage.py apitoken_create), "
                          f"then drop {TABLE} yourself.", stacklevel=1)
            return
    schema_editor.execute(f"DROP TABLE {TABLE}")


class Migration(migrations.Migration):

    dependencies = [
        ("apitokens", "0001_initial"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.RunPython(drop_if_empty, migrations.RunPython.noop),
    ]
