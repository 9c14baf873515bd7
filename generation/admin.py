"""Model versions in the admin: see configs and metrics, activate one."""

from __future__ import annotations

from django.contrib import admin, messages

from generation import services
from generation.models import GeneratedTrack, GenerationJob, ModelVersion


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


class GeneratedTrackInline(admin.TabularInline):
    model = GenerationJob.tracks.through
    extra = 0
    can_delete = False
    raw_id_fields = ["track"]
    verbose_name = "resulting track"
    verbose_name_plural = "resulting tracks"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    """Watch jobs: who asked for what, how they ran, what came out."""

    list_display = [
        "id",
        "kind",
        "owner",
        "status",
        "progress",
        "batch_jobs",
        "attempts",
        "model_version",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "model_version"]
    search_fields = ["owner__username", "error"]
    list_select_related = ["owner", "model_version"]
    readonly_fields = [f.name for f in GenerationJob._meta.fields]
    exclude = ["tracks"]
    inlines = [GeneratedTrackInline]

    def has_add_permission(self, request) -> bool:
        return False  # jobs are created through the API, which validates them


@admin.register(GeneratedTrack)
class GeneratedTrackAdmin(admin.ModelAdmin):
    list_display = ["track", "job", "model_version", "position"]
    list_select_related = ["track", "job", "model_version"]
    raw_id_fields = ["track", "job", "parents"]
    readonly_fields = ["latent"]
