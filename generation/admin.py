"""Model versions in the admin: see configs and metrics, activate one."""

from __future__ import annotations

from django.contrib import admin, messages

from generation import services
from generation.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "is_active", "checkpoint_path", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "checkpoint_path")
    # Activation goes through the service (it keeps exactly one active), never through the form.
    readonly_fields = ("is_active", "created_at")
    actions = ["activate"]

    @admin.action(description="Make the selected version the active one")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = services.model_version_activate(model_version=queryset.get())
        self.message_user(request, f"{version} is now active.", messages.SUCCESS)
