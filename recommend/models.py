"""Track embeddings: one latent vector per track and model version (the VAE posterior mean)."""

from __future__ import annotations

import numpy as np
from django.db import models
from django.utils import timezone


class TrackEmbedding(models.Model):
    """Where a track lies in a model version's latent space.

    `vector` holds float32 little-endian bytes (z_dim * 4): compact, and read straight into numpy
    when the index is rebuilt. For a tune longer than the model's window it is the mean of the
    posterior means of its non-overlapping windows (recommend.services.track_embed_batch).
    """

    track = models.ForeignKey("catalog.Track", on_delete=models.CASCADE, related_name="embeddings")
    model_version = models.ForeignKey("generation.ModelVersion", on_delete=models.CASCADE, related_name="embeddings")
    vector = models.BinaryField(help_text="float32 little-endian, z_dim values.")
    dim = models.PositiveSmallIntegerField()
    sigma_mean = models.FloatField(help_text="Mean posterior standard deviation (how unsure the encoder is).")
    window_count = models.PositiveIntegerField(default=1, help_text="Windows of seq_len steps that were pooled.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["track", "model_version"], name="trackembedding_one_per_version"),
        ]
        indexes = [models.Index(fields=["model_version", "track"])]

    def __str__(self) -> str:
        return f"embedding of track {self.track_id} (model version {self.model_version_id})"

    @property
    def array(self) -> np.ndarray:
        return vector_from_bytes(self.vector)


def vector_to_bytes(vector) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(data) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype="<f4").astype(np.float32)


class IndexStatus(models.Model):
    """Whether a model version's embeddings cover the catalog, so its index may serve the feeds.

    A newly activated version starts with no embeddings; until its first full pass completes, feeds
    keep serving from the last version whose pass did (recommend.selectors.serving_version), so a
    model swap never leaves users with an empty or half-filled index.
    """

    model_version = models.OneToOneField(
        "generation.ModelVersion", on_delete=models.CASCADE, related_name="index_status"
    )
    complete = models.BooleanField(default=False)
    tracks = models.PositiveIntegerField(default=0, help_text="Tracks embedded when the pass completed.")
    completed_at = models.DateTimeField(null=True, blank=True)
    change_seq = models.PositiveBigIntegerField(default=0, help_text="Sequence number of the last IndexChange.")

    def __str__(self) -> str:
        state = "complete" if self.complete else "filling"
        return f"index of model version {self.model_version_id}: {state}"


class IndexChange(models.Model):
    """One add or removal in a model version's index, numbered in commit order: the log that every
    host's local index folder follows (recommend.services.index_sync).

    seq is taken under a row lock on the version's IndexStatus, so a transaction that commits seq n
    committed after every seq below n: a host that has seen seq n has seen all before it. An add
    names tracks whose vectors are read from TrackEmbedding when the change is applied (the latest
    vector, or a removal when the embedding is gone by then).
    """

    model_version = models.ForeignKey("generation.ModelVersion", on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveBigIntegerField()
    removed = models.BooleanField(default=False)
    track_ids = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "seq"], name="index_change_seq_unique")]

    def __str__(self) -> str:
        return f"index change {self.seq} of model version {self.model_version_id}"


class CollaborativeModel(models.Model):
    """One fit of everyone's ratings (recommend.collaborative.Signals): ALS item factors and each
    track's damped popularity, as a numpy .npz blob (no pickle). The newest row serves; every web
    process loads it once and again when a newer row appears (recommend.model_readers)."""

    created_at = models.DateTimeField(default=timezone.now)
    data = models.BinaryField(help_text="recommend.collaborative.Signals.to_bytes(): an .npz archive.")
    tracks = models.PositiveIntegerField(default=0)
    users = models.PositiveIntegerField(default=0)
    ratings = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0, help_text="Time the fit took.")

    class Meta:
        get_latest_by = "pk"

    def __str__(self) -> str:
        return f"collaborative model {self.pk}: {self.users} listeners, {self.ratings} ratings"


class RankerModel(models.Model):
    """One training of the feed's ranker (recommend.ranker.Ranker): weights only, as JSON.
    The newest row serves; without any, recommend.ranker.DEFAULT_WEIGHTS do."""

    created_at = models.DateTimeField(default=timezone.now)
    weights = models.JSONField(help_text="recommend.ranker.Ranker.to_json(): features, coefficients, metrics.")

    class Meta:
        get_latest_by = "pk"

    def __str__(self) -> str:
        return f"ranker {self.pk}"
