"""Output shapes of the recommendation API."""

from __future__ import annotations

from rest_framework import serializers

from catalog.serializers import TrackSerializer


class SimilarQuerySerializer(serializers.Serializer):
    k = serializers.IntegerField(min_value=1, max_value=100, default=10)


class ScoredTrackSerializer(serializers.Serializer):
    score = serializers.FloatField(help_text="Cosine similarity in the latent space (1 = same direction).")
    track = TrackSerializer()


class SimilarSerializer(serializers.Serializer):
    track_id = serializers.IntegerField()
    model_version = serializers.IntegerField()
    results = ScoredTrackSerializer(many=True)


class FeedQuerySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["recommended", "generated", "mixed"], default="recommended")


class FeedItemSerializer(serializers.Serializer):
    score = serializers.FloatField(help_text="Cosine similarity to the taste vector it was found by.")
    reason = serializers.CharField(help_text='Why it is here, e.g. "near Tune X, which you rated 5".')
    source = serializers.CharField(help_text='"recommended" (catalog) or "generated".')
    track = TrackSerializer()


class FeedPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = FeedItemSerializer(many=True)
