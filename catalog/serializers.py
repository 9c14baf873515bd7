"""Input and output shapes of the catalog API."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from catalog.models import Rating, Track


class TrackSerializer(serializers.ModelSerializer):
    rating_count = serializers.IntegerField(read_only=True, default=0)
    rating_average = serializers.FloatField(read_only=True, allow_null=True, default=None)
    midi_url = serializers.SerializerMethodField()
    audio_url = serializers.SerializerMethodField()
    pianoroll_url = serializers.SerializerMethodField()

    class Meta:
        model = Track
        fields = [
            "id",
            "title",
            "composer",
            "collection",
            "region",
            "source",
            "is_generated",
            "duration_seconds",
            "tempo_bpm",
            "key",
            "time_signature",
            "note_count",
            "pitch_min",
            "pitch_max",
            "file_size",
            "content_hash",
            "rating_count",
            "rating_average",
            "midi_url",
            "audio_url",
            "pianoroll_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_midi_url(self, track: Track) -> str:
        return self._url("api:track-midi", track)

    def get_audio_url(self, track: Track) -> str:
        return self._url("api:track-audio", track)

    def get_pianoroll_url(self, track: Track) -> str:
        return self._url("api:track-pianoroll", track)

    def _url(self, name: str, track: Track) -> str:
        path = reverse(name, kwargs={"track_id": track.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class AudioPendingSerializer(serializers.Serializer):
    status = serializers.CharField(help_text='"pending" while the audio is rendered.')
    retry_after = serializers.IntegerField(
        help_text="Seconds to wait before asking again (also the Retry-After header)."
    )
    message = serializers.CharField()


class TrackUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A Standard MIDI File (.mid), at most the configured size.")
    title = serializers.CharField(max_length=300, required=False, allow_blank=True)
    composer = serializers.CharField(max_length=200, required=False, allow_blank=True)
    collection = serializers.CharField(max_length=100, required=False, allow_blank=True)
    region = serializers.CharField(max_length=100, required=False, allow_blank=True)


class TrackUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=300, required=False)
    composer = serializers.CharField(max_length=200, required=False, allow_blank=True)
    collection = serializers.CharField(max_length=100, required=False, allow_blank=True)
    region = serializers.CharField(max_length=100, required=False, allow_blank=True)
    key = serializers.CharField(max_length=32, required=False, allow_blank=True)
    time_signature = serializers.CharField(max_length=8, required=False)


class RatingInputSerializer(serializers.Serializer):
    score = serializers.IntegerField(min_value=1, max_value=5)


class RatingSerializer(serializers.ModelSerializer):
    track_id = serializers.IntegerField(read_only=True)
    track_title = serializers.CharField(source="track.title", read_only=True)

    class Meta:
        model = Rating
        fields = ["track_id", "track_title", "score", "created_at", "updated_at"]
        read_only_fields = fields


class RegisterSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]{3,150}$", help_text="3 to 150 letters, digits or @.+-_")
    password = serializers.CharField(min_length=8, max_length=128, write_only=True)
    email = serializers.EmailField(required=False, allow_blank=True)


class TokenInputSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(write_only=True)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class AccountSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField(allow_blank=True)
    is_staff = serializers.BooleanField()
    token = serializers.CharField(required=False)
