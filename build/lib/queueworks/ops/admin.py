"""Admin: the audit log (read-only), and beat's schedules with every edit audited."""

from django.contrib import admin
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from queueworks.ops.audit import audit_record
from queueworks.ops.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "username", "address", "action", "target", "outcome", "via")
    list_filter = ("action", "outcome", "via")
    search_fields = ("username", "target", "address")
    date_hierarchy = "at"

    # A log nobody can rewrite from the admin (retention prunes it).
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _schedule_fields(task: PeriodicTask) -> dict:
    return {"task": task.task, "enabled": task.enabled, "queue": task.queue or "",
            "kwargs": task.kwargs, "args": task.args,
            "schedule": str(task.crontab or task.interval or task.clocked or task.solar or "")}


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class AuditedPeriodicTaskAdmin(PeriodicTaskAdmin):
    """django-celery-beat's admin; each create/change/delete/toggle is audited.

    Its "Run selected tasks" action is removed: it sends any registered task
    past the Task API's allowlist and permissions.
    """

    actions = ("enable_tasks", "disable_tasks", "toggle_tasks")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(action="schedule.change" if change else "schedule.create", target=obj.name,
                     outcome=AuditEntry.OK, request=request, via="admin",
                     detail={"changed": sorted(form.changed_data), **_schedule_fields(obj)})

    def delete_model(self, request, obj):
        name = obj.name
        super().delete_model(request, obj)
        audit_record(action="schedule.delete", target=name, outcome=AuditEntry.OK,
                     request=request, via="admin")

    def delete_queryset(self, request, queryset):
        names = list(queryset.values_list("name", flat=True))
        super().delete_queryset(request, queryset)
        for name in names:
            audit_record(action="schedule.delete", target=name, outcome=AuditEntry.OK,
                         request=request, via="admin")

    def _audit_toggle(self, request, queryset, action):
        names = list(queryset.values_list("name", flat=True))
        getattr(super(), action)(request, queryset)
        for task in PeriodicTask.objects.filter(name__in=names):
            audit_record(action="schedule.change", target=task.name, outcome=AuditEntry.OK,
                         request=request, via="admin",
                         detail={"changed": ["enabled"], "enabled": task.enabled})

    @admin.action(description="Enable selected tasks")
    def enable_tasks(self, request, queryset):
        self._audit_toggle(request, queryset, "enable_tasks")

    @admin.action(description="Disable selected tasks")
    def disable_tasks(self, request, queryset):
        self._audit_toggle(request, queryset, "disable_tasks")

    @admin.action(description="Toggle activity of selected tasks")
    def toggle_tasks(self, request, queryset):
        self._audit_toggle(request, queryset, "toggle_tasks")
