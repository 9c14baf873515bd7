"""Reads of recommendation state in the database: stored embeddings and which model version serves.

The index, the taste vectors and the feeds built on these live in modules named for them
(index_readers, taste, feeds, cold_start, similar); the vector algorithms in recommend.algorithms.
"""

from __future__ import annotations

import numpy as np
from django.db.models import F, Q, QuerySet

from catalog.models import Track
from generation.models import ModelVersion
from recommend.models import TrackEmbedding, vector_from_bytes


def embedding_matrix(*, model_version, track_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """(track ids int64 [n], vectors float32 [n, z]) of the stored embeddings of a version."""
    rows = TrackEmbedding.objects.filter(model_version=model_version)
    if track_ids is not None:
        rows = rows.filter(track_id__in=list(track_ids))
    ids, vectors = [], []
    for track_id, data in rows.order_by("track_id").values_list("track_id", "vector").iterator(chunk_size=2000):
        ids.append(track_id)
        vectors.append(vector_from_bytes(data))
    if not ids:
        return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
    return np.asarray(ids, dtype=np.int64), np.stack(vectors).astype(np.float32)


def embedding_get(*, track, model_version) -> np.ndarray | None:
    data = (
        TrackEmbedding.objects.filter(track=track, model_version=model_version).values_list("vector", flat=True).first()
    )
    return None if data is None else vector_from_bytes(data)


def embedding_count(*, model_version) -> int:
    return TrackEmbedding.objects.filter(model_version=model_version).count()


def tracks_missing_embedding(*, model_version) -> QuerySet:
    return Track.objects.exclude(embeddings__model_version=model_version).order_by("pk").values_list("pk", flat=True)


def serving_version() -> ModelVersion | None:
    """The model version whose latent space the feeds use.

    The active version once its first full embedding pass has completed; until then the version
    that most recently completed one, so that activating a new model never serves a half-filled
    index (the swap happens on the first request after the pass ends). With no completed version
    at all (a fresh install filling its first index), the active one. One query: every feed and
    similar-tracks request asks.
    """
    candidates = list(
        ModelVersion.objects.filter(Q(is_active=True) | Q(index_status__complete=True))
        .annotate(completed_at=F("index_status__completed_at"), complete=F("index_status__complete"))
        .order_by(F("completed_at").desc(nulls_last=True))
    )
    active = next((v for v in candidates if v.is_active), None)
    if active is None or active.complete:
        return active
    return next((v for v in candidates if v.complete), active)
