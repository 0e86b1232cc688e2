"""Groups for the Task API's permissions (add users to them in the admin):

* "task viewers": read every task (``view_all_tasks``);
* "task operators": read every task, start, cancel and re-run them.

Cancelling system tasks, program control and dead letters are granted one by
one (they are not part of either group).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = {
    "task viewers": ("view_all_tasks",),
    "task operators": ("view_all_tasks", "operate_tasks"),
}


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations ran.
    app_config = apps.get_app_config("taskapi")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(
            content_type__app_label="taskapi", codename__in=codenames))


def remove_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name="task viewers").delete()
    Permission = apps.get_model("auth", "Permission")
    operators = Group.objects.filter(name="task operators").first()
    if operators is not None:
        operators.permissions.remove(*Permission.objects.filter(
            content_type__app_label="taskapi", codename="view_all_tasks"))


class Migration(migrations.Migration):
    dependencies = [("taskapi", "0003_access_permissions")]

    operations = [migrations.RunPython(create_groups, remove_groups)]
