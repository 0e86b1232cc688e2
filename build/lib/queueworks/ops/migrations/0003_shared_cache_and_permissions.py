"""The shared cache table (throttle counters, the workers' snapshot), the
dashboard's re-run permission retired (re-runs need taskapi.operate_tasks),
and the audit log readable by the "task operators" group."""

from django.contrib.auth.management import create_permissions
from django.core.management import call_command
from django.db import migrations


def forwards(apps, schema_editor):
    # Creates the table of every database cache in settings.CACHES (idempotent).
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)

    app_config = apps.get_app_config("ops")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    Permission.objects.filter(content_type__app_label="ops", codename="rerun_tasks").delete()
    operators, _ = Group.objects.get_or_create(name="task operators")
    operators.permissions.add(*Permission.objects.filter(
        content_type__app_label="ops", codename="view_auditentry"))


class Migration(migrations.Migration):
    dependencies = [
        ("ops", "0002_audit_log"),
        ("taskapi", "0004_access_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
