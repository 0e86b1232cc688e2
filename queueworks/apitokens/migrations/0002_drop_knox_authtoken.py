"""Drop the table of knox's own token model.

KNOX_TOKEN_MODEL swaps in this app's ApiToken, yet knox's migrations create
``knox_authtoken`` anyway (they predate its swappable model), with a foreign
key to the user table.  No code reads or writes it; Django leaves a
swapped-out model's table out of ``flush``, so on PostgreSQL that foreign key
made every flush (each transactional test's teardown, ``manage.py flush``)
refuse to truncate the user table.  Dropped after knox's last migration, on
new and existing databases alike.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("apitokens", "0001_initial"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.RunSQL("DROP TABLE IF EXISTS knox_authtoken",
                          reverse_sql=migrations.RunSQL.noop),
    ]
