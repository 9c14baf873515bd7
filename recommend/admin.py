from django.contrib import admin

from recommend.models import IndexStatus, TrackEmbedding


@admin.register(TrackEmbedding)
class TrackEmbeddingAdmin(admin.ModelAdmin):
    list_display = ("track", "model_version", "dim", "sigma_mean", "window_count", "created_at")
    list_filter = ("model_version",)
    search_fields = ("track__title",)
    raw_id_fields = ("track",)
    readonly_fields = ("track", "model_version", "dim", "sigma_mean", "window_count", "created_at")
    exclude = ("vector",)

    def has_add_permission(self, request):
        return False  # embeddings come from the model (embed tasks, manage.py embed_catalog)


@admin.register(IndexStatus)
class IndexStatusAdmin(admin.ModelAdmin):
    """Which model versions' indexes may serve the feeds (read-only: embedding passes set it)."""

    list_display = ("model_version", "complete", "tracks", "completed_at")
    readonly_fields = ("model_version", "complete", "tracks", "completed_at")

    def has_add_permission(self, request):
        return False
