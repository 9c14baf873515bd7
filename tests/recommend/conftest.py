"""Fixtures for the recommendation tests: tracks with embeddings and a built index."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def put_embeddings():
    """Store chosen vectors as embeddings (no VAE), then rebuild the version's index."""
    from recommend import services
    from recommend.models import TrackEmbedding, vector_to_bytes

    def put(model_version, vectors: dict, rebuild: bool = True):
        for track, vector in vectors.items():
            vector = np.asarray(vector, dtype=np.float32)
            TrackEmbedding.objects.update_or_create(
                track=track,
                model_version=model_version,
                defaults={"vector": vector_to_bytes(vector), "dim": len(vector), "sigma_mean": 0.1},
            )
        if rebuild:
            services.index_rebuild(model_version=model_version)

    return put


@pytest.fixture
def embedded_tracks(model_version, track_factory):
    """n catalog tracks embedded with the active (tiny) model, index built."""
    from recommend import services

    def make(n: int, **overrides):
        tracks = [track_factory(**overrides) for _ in range(n)]
        report = services.track_embed_batch(track_ids=[t.pk for t in tracks], model_version=model_version)
        assert sorted(report.embedded) == sorted(t.pk for t in tracks)
        services.index_rebuild(model_version=model_version)
        return tracks

    return make
