from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """Our own user model from the first migration, so it can grow without a painful swap."""

    def save(self, *args, **kwargs):
        # set_password() leaves the new password in _password until saved (a hash upgrade at sign-in
        # does not: Django clears it there), the same signal Django's password_changed() hook uses.
        # Sessions already end on a password change (their hash is of the password); API tokens did not.
        password_changed = self._password is not None and not self._state.adding
        super().save(*args, **kwargs)
        if password_changed:
            from rest_framework.authtoken.models import Token

            Token.objects.filter(user=self).delete()  # the client signs in again: POST /api/v1/auth/token/


def track_midi_path(track: Track, filename: str) -> str:
    # Content-addressed: the hash names the file, two levels of fan-out keep folders small.
    return f"tracks/midi/{track.content_hash[:2]}/{track.content_hash}.mid"


class Track(models.Model):
    title = models.CharField(max_length=300)
    composer = models.CharField(max_length=200, blank=True, default="")
    collection = models.CharField(max_length=100, blank=True, default="")
    region = models.CharField(max_length=100, blank=True, default="")
    source = models.CharField(
        max_length=300, blank=True, default="", help_text="Where the tune came from, e.g. a corpus file and index."
    )
    midi_file = models.FileField(upload_to=track_midi_path, max_length=200)
    content_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the MIDI bytes.")
    file_size = models.PositiveIntegerField()
    duration_seconds = models.FloatField()
    tempo_bpm = models.FloatField()
    key = models.CharField(max_length=32, blank=True, default="", help_text='e.g. "D major", "A minor".')
    time_signature = models.CharField(max_length=8, default="4/4")
    note_count = models.PositiveIntegerField()
    pitch_min = models.PositiveSmallIntegerField()
    pitch_max = models.PositiveSmallIntegerField()
    is_generated = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="tracks"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["collection"]),
            models.Index(fields=["composer"]),
            models.Index(fields=["region"]),
            models.Index(fields=["key"]),
            models.Index(fields=["time_signature"]),
            models.Index(fields=["is_generated", "-created_at"]),
            models.Index(fields=["title"]),
            models.Index(fields=["source"]),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(pitch_min__lte=models.F("pitch_max")), name="track_pitch_range"),
        ]

    def __str__(self) -> str:
        return self.title


class Rating(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ratings")
    track = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="ratings")
    score = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "track"], name="rating_one_per_user_and_track"),
            models.CheckConstraint(condition=models.Q(score__gte=1, score__lte=5), name="rating_score_1_to_5"),
        ]
        indexes = [models.Index(fields=["track", "score"])]

    def __str__(self) -> str:
        return f"{self.user} rated {self.track_id}: {self.score}"


def track_audio_path(media: TrackMedia, filename: str) -> str:
    # Named by the MIDI hash it was rendered from: a changed file gets a new name, never a stale cache.
    return f"tracks/audio/{media.audio_source_hash[:2]}/{media.audio_source_hash}.ogg"


def track_pianoroll_path(media: TrackMedia, filename: str) -> str:
    suffix = "-thumb" if filename.endswith("-thumb.png") else ""
    return f"tracks/pianoroll/{media.pianoroll_source_hash[:2]}/{media.pianoroll_source_hash}{suffix}.png"


class TrackMedia(models.Model):
    """What a track sounds and looks like: rendered audio and piano-roll pictures, cached in storage.

    Each file records the track content_hash it was made from; when that differs from the track's,
    the file is stale and is made again.
    """

    class AudioStatus(models.TextChoices):
        PENDING = "pending", "pending"
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    track = models.OneToOneField(Track, on_delete=models.CASCADE, primary_key=True, related_name="media")
    audio_status = models.CharField(max_length=10, choices=AudioStatus.choices, default=AudioStatus.PENDING)
    audio_file = models.FileField(upload_to=track_audio_path, max_length=200, blank=True)
    audio_source_hash = models.CharField(max_length=64, blank=True, default="")
    audio_error = models.TextField(blank=True, default="")
    audio_size = models.PositiveIntegerField(null=True, blank=True, help_text="Bytes.")
    audio_duration_seconds = models.FloatField(null=True, blank=True)
    audio_loudness_lufs = models.FloatField(null=True, blank=True)
    render_seconds = models.FloatField(null=True, blank=True, help_text="Wall time of the last audio render.")
    audio_requested_at = models.DateTimeField(null=True, blank=True)
    audio_rendered_at = models.DateTimeField(null=True, blank=True)
    pianoroll_file = models.FileField(upload_to=track_pianoroll_path, max_length=200, blank=True)
    pianoroll_thumb_file = models.FileField(upload_to=track_pianoroll_path, max_length=200, blank=True)
    pianoroll_source_hash = models.CharField(max_length=64, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "track media"
        indexes = [models.Index(fields=["audio_status"])]

    def __str__(self) -> str:
        return f"media of track {self.track_id}: audio {self.audio_status}"

    @property
    def audio_is_current(self) -> bool:
        return (
            self.audio_status == self.AudioStatus.READY
            and bool(self.audio_file)
            and self.audio_source_hash == self.track.content_hash
        )
