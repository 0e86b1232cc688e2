"""The one-statement permission backend answers exactly as Django's ModelBackend."""

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from queueworks.core.auth_backend import OneQueryModelBackend

pytestmark = pytest.mark.django_db


def _perms(*codenames):
    return list(Permission.objects.filter(codename__in=codenames))


@pytest.fixture
def users():
    viewers = Group.objects.create(name="g-viewers")
    viewers.permissions.add(*_perms("view_all_tasks", "view_user"))
    operators = Group.objects.create(name="g-operators")
    operators.permissions.add(*_perms("operate_tasks", "view_all_tasks"))
    Group.objects.create(name="g-empty")
    made = {}
    for name, groups, own, flags in [
        ("nobody", [], [], {}),
        ("own-only", [], ["add_group", "view_all_tasks"], {}),
        ("group-only", ["g-viewers"], [], {}),
        ("both", ["g-viewers", "g-operators", "g-empty"], ["add_group"], {}),
        ("empty-group", ["g-empty"], [], {}),
        ("inactive", ["g-viewers"], ["add_group"], {"is_active": False}),
        ("superuser", [], [], {"is_superuser": True}),
        ("staff", [], [], {"is_staff": True}),
    ]:
        user = User.objects.create_user(name, **flags)
        user.groups.add(*Group.objects.filter(name__in=groups))
        user.user_permissions.add(*_perms(*own))
        made[name] = user
    return made


def _fresh(user):  # no permission cache left from an earlier call
    return User.objects.get(pk=user.pk)


def test_same_permission_sets_as_model_backend(users):
    for name, user in users.items():
        expected = ModelBackend().get_all_permissions(_fresh(user))
        assert OneQueryModelBackend().get_all_permissions(_fresh(user)) == expected, name
    assert OneQueryModelBackend().get_all_permissions(_fresh(users["both"])) == {
        "taskapi.view_all_tasks", "taskapi.operate_tasks", "auth.view_user", "auth.add_group"}
    assert OneQueryModelBackend().get_all_permissions(_fresh(users["inactive"])) == set()
    assert OneQueryModelBackend().get_all_permissions(AnonymousUser()) == set()
    assert OneQueryModelBackend().get_all_permissions(_fresh(users["both"]), obj=object()) == set()


def test_same_answers_to_has_perm(users):
    for name, user in users.items():
        for perm in ("taskapi.view_all_tasks", "taskapi.operate_tasks", "auth.add_group",
                     "auth.view_user", "taskapi.cancel_system_tasks"):
            assert (OneQueryModelBackend().has_perm(_fresh(user), perm)
                    == ModelBackend().has_perm(_fresh(user), perm)), (name, perm)


def test_one_query_per_request_user(users):
    user, backend = _fresh(users["both"]), OneQueryModelBackend()
    with CaptureQueriesContext(connection) as queries:
        assert user.has_perm("taskapi.operate_tasks") and backend.has_perm(user, "auth.add_group")
        assert not user.has_perm("taskapi.cancel_system_tasks")
    assert len(queries) == 1


def test_the_project_uses_it():
    from django.conf import settings

    assert "queueworks.core.auth_backend.OneQueryModelBackend" in settings.AUTHENTICATION_BACKENDS
    assert "django.contrib.auth.backends.ModelBackend" not in settings.AUTHENTICATION_BACKENDS
