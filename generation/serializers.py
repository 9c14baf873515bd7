from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from catalog.serializers import TrackSerializer
from generation.models import GenerationJob
from generation.services import STEER_ATTRIBUTES


class GenerationRequestSerializer(serializers.Serializer):
    """One request shape for every kind; which fields a kind needs is in each field's help."""

    kind = serializers.ChoiceField(choices=GenerationJob.Kind.choices)
    count = serializers.IntegerField(
        min_value=1,
        max_value=settings.GENERATION_MAX_COUNT,
        default=1,
        help_text="Melodies to make (for interpolate: the points between the two tracks).",
    )
    temperature = serializers.FloatField(
        min_value=0.0,
        max_value=2.0,
        required=False,
        help_text="0: most likely notes; higher: more adventurous. Default: the model's own (chosen by "
        "measurement; 0.5 for the 16-bar demo VAE).",
    )
    bars = serializers.IntegerField(
        min_value=2,
        max_value=64,
        required=False,
        help_text="Long-form model: the tune's length in bars (even; default 16). continue: the length after it.",
    )
    meter = serializers.ChoiceField(
        choices=["2/4", "3/4", "4/4", "6/8"], required=False, help_text="Long-form model, sample: the meter."
    )
    prompt_bars = serializers.IntegerField(
        min_value=2, max_value=63, required=False, help_text="continue: the track's first bars, kept (default 8)."
    )
    from_bar = serializers.IntegerField(
        min_value=1, max_value=64, required=False, help_text="infill: the first bar written anew (1-based)."
    )
    to_bar = serializers.IntegerField(
        min_value=1, max_value=64, required=False, help_text="infill: the last bar written anew (inclusive)."
    )
    seed = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, required=False, help_text="Same seed, same latent targets."
    )
    track_id = serializers.IntegerField(
        required=False, help_text="similar, steer, continue, infill: the track to start from."
    )
    track_ids = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        max_length=2,
        help_text="interpolate: the two tracks to travel between.",
    )
    spread = serializers.FloatField(
        required=False,
        min_value=0.01,
        max_value=2.0,
        help_text="similar: how far from the track (latent standard deviation).",
    )
    attribute = serializers.ChoiceField(
        choices=STEER_ATTRIBUTES,
        required=False,
        help_text="steer: note_density (denser), register (higher), "
        "major_minor (negative amount: more minor), syncopation.",
    )
    amount = serializers.FloatField(
        required=False,
        min_value=-4.0,
        max_value=4.0,
        help_text="steer: how far along the attribute (negative: less of it).",
    )


class GenerationJobSerializer(serializers.ModelSerializer):
    model_version = serializers.CharField(source="model_version.name", read_only=True)
    tracks = TrackSerializer(many=True, read_only=True)

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "kind",
            "params",
            "status",
            "progress",
            "error",
            "model_version",
            "tracks",
            "batch_jobs",
            "attempts",
            "timings",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields
