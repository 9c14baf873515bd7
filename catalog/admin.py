"""Catalog management for admins: browse, upload MIDI (through the ingestion service), edit, delete."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import Avg, Count
from django.urls import reverse
from django.utils.html import format_html

from catalog import services
from catalog.models import Rating, Track, TrackMedia, User
from config.errors import ApplicationError

admin.site.register(User, UserAdmin)


class TrackUploadForm(forms.ModelForm):
    """The add form: a MIDI file and optional metadata; everything else is read from the file."""

    midi_upload = forms.FileField(label="MIDI file", help_text="A Standard MIDI File (.mid).")

    class Meta:
        model = Track
        fields = ["title", "composer", "collection", "region"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["title"].required = False
        self.ingest_created: bool | None = None

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("midi_upload")
        if upload is None or self.errors:
            return cleaned
        try:
            result = services.track_ingest(
                midi_bytes=upload.read(),
                title=cleaned.get("title") or upload.name.rsplit(".", 1)[0],
                composer=cleaned.get("composer") or "",
                collection=cleaned.get("collection") or "",
                region=cleaned.get("region") or "",
                source=f"upload:{upload.name}",
                created_by=getattr(self, "request_user", None),
            )
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc
        self.instance = result.track
        self.ingest_created = result.created
        return cleaned


class RatingInline(admin.TabularInline):
    model = Rating
    extra = 0
    fields = ["user", "score", "updated_at"]
    readonly_fields = fields
    can_delete = False
    ordering = ["-updated_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Track)
class TrackAdmin(admin.ModelAdmin):
    list_display = [
        "thumbnail",
        "title",
        "composer",
        "collection",
        "region",
        "key",
        "time_signature",
        "duration",
        "note_count",
        "is_generated",
        "ratings",
        "created_at",
    ]
    list_filter = ["is_generated", "collection", "region", "time_signature"]
    search_fields = ["title", "composer", "source", "content_hash"]
    list_per_page = 50
    date_hierarchy = "created_at"
    list_display_links = ["title"]
    readonly_fields = [
        "preview",
        "midi_file",
        "content_hash",
        "file_size",
        "source",
        "duration_seconds",
        "tempo_bpm",
        "note_count",
        "pitch_min",
        "pitch_max",
        "is_generated",
        "created_by",
        "created_at",
        "updated_at",
        "rating_summary",
    ]
    fields = ["title", "composer", "collection", "region", "key", "time_signature", *readonly_fields]
    inlines = [RatingInline]
    actions = ["delete_tracks", "render_media"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("media")
            .annotate(_ratings=Count("ratings"), _avg=Avg("ratings__score"))
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            # A subclass per request carries the uploader without sharing state between requests.
            return type("TrackUploadForm", (TrackUploadForm,), {"request_user": request.user})
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ["midi_upload", "title", "composer", "collection", "region"] if obj is None else self.fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change):
        if change:
            changed = {name: form.cleaned_data[name] for name in form.changed_data}
            if changed:
                try:
                    services.track_update(track=obj, **changed)
                except ApplicationError as exc:
                    self.message_user(request, exc.message, messages.ERROR)
            return
        if form.ingest_created is False:
            self.message_user(
                request, "This MIDI file is already in the catalog: showing that track.", messages.WARNING
            )

    def delete_model(self, request, obj):
        services.track_delete(track=obj)

    def delete_queryset(self, request, queryset):
        for track in queryset:
            services.track_delete(track=track)

    @admin.action(description="Delete selected tracks and their files", permissions=["delete"])
    def delete_tracks(self, request, queryset):
        count = queryset.count()
        self.delete_queryset(request, queryset)
        self.message_user(request, f"Deleted {count} tracks.", messages.SUCCESS)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # the built-in bulk delete would skip the files
        return actions

    @admin.action(description="Render audio and piano roll again", permissions=["change"])
    def render_media(self, request, queryset):
        for track in queryset:
            services.track_media_schedule(track=track, force=True)
        self.message_user(request, f"Queued {queryset.count()} renders.", messages.SUCCESS)

    @admin.display(description="roll")
    def thumbnail(self, obj) -> str:
        url = reverse("api:track-pianoroll", kwargs={"track_id": obj.pk})
        return format_html(
            '<img src="{}?size=thumb" width="120" height="24" alt="" loading="lazy" style="border:1px solid #ddd">', url
        )

    @admin.display(description="listen and look")
    def preview(self, obj) -> str:
        media = getattr(obj, "media", None) if obj.pk else None
        audio_url = reverse("api:track-audio", kwargs={"track_id": obj.pk})
        roll_url = reverse("api:track-pianoroll", kwargs={"track_id": obj.pk})
        if media is not None and media.audio_is_current:
            audio = format_html(
                '<audio controls preload="none" src="{}" style="width:100%;max-width:600px"></audio>'
                '<div class="help">Ogg Vorbis, {} KiB, {} LUFS, rendered in {} s</div>',
                audio_url,
                (media.audio_size or 0) // 1024,
                media.audio_loudness_lufs,
                media.render_seconds,
            )
        elif media is not None and media.audio_status == TrackMedia.AudioStatus.FAILED:
            audio = format_html('<p class="errornote">The audio could not be rendered: {}</p>', media.audio_error)
        else:
            audio = format_html(
                '<p>The audio is being rendered (<a href="{}">check</a>); reload this page in a '
                'few seconds, or use the action "Render audio and piano roll again".</p>',
                audio_url,
            )
        return format_html(
            '{}<div><img src="{}" width="1200" height="400" alt="piano roll" '
            'style="max-width:100%;height:auto;border:1px solid #ddd"></div>',
            audio,
            roll_url,
        )

    @admin.display(description="duration", ordering="duration_seconds")
    def duration(self, obj) -> str:
        minutes, seconds = divmod(int(round(obj.duration_seconds)), 60)
        return f"{minutes}:{seconds:02d}"

    @admin.display(description="ratings", ordering="_ratings")
    def ratings(self, obj) -> str:
        return f"{obj._ratings} (avg {obj._avg:.1f})" if obj._ratings else "0"

    @admin.display(description="ratings")
    def rating_summary(self, obj) -> str:
        stats = obj.ratings.aggregate(count=Count("id"), average=Avg("score"))
        return f"{stats['count']} ratings, average {stats['average']:.2f}" if stats["count"] else "no ratings yet"


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = ["track", "user", "score", "updated_at"]
    list_filter = ["score"]
    search_fields = ["track__title", "user__username"]
    raw_id_fields = ["track", "user"]
    list_select_related = ["track", "user"]
