"""Tokens in the admin: read-only (keys are only ever printed by
``manage.py apitoken_create``); deleting one revokes it."""

from django.contrib import admin

from queueworks.apitokens.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "created", "expiry")
    list_filter = ("name",)
    search_fields = ("user__username", "name")
    fields = ("user", "name", "created", "expiry")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
