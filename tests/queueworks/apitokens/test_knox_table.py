"""knox's own token table is never created: the project's token model
(KNOX_TOKEN_MODEL = apitokens.ApiToken) replaces it, yet knox's migrations
create ``knox_authtoken`` with a foreign key to ``auth_user``.  PostgreSQL
then refuses to truncate ``auth_user`` (Django's flush lists no swapped-out
table), so every transactional test's teardown and ``manage.py flush`` fail
there."""

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.postgres


@pytest.mark.django_db
def test_the_swapped_out_knox_table_is_not_created():
    from django.db import connection

    assert "knox_authtoken" not in connection.introspection.table_names()
    assert "apitokens_apitoken" in connection.introspection.table_names()


@pytest.mark.django_db(transaction=True)
def test_flush_empties_users_and_their_tokens():
    from django.contrib.auth.models import User

    from queueworks.apitokens.models import ApiToken
    from queueworks.apitokens.services import api_token_create

    api_token_create(user=User.objects.create_user("flushed"), name="t")
    call_command("flush", interactive=False, verbosity=0)
    assert (User.objects.count(), ApiToken.objects.count()) == (0, 0)
