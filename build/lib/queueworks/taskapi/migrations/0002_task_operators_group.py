"""The "task operators" group, holding the permission to start, cancel and
re-run tasks through the Task API (add users to it in the admin)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "task operators"
CODENAME = "operate_tasks"


def create_group(apps, schema_editor):
    # Permissions are normally created after all migrations ran; make sure
    # this one exists now so the group can hold it.
    app_config = apps.get_app_config("taskapi")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.get(content_type__app_label="taskapi", codename=CODENAME)
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(permission)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("taskapi", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
