"""Fixtures for the pages' tests: a signed-in browser-like client, and tracks with chosen embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import Client


@pytest.fixture
def page_client(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def embedded(model_version):
    """Store chosen vectors as the tracks' embeddings (no VAE), then rebuild the index."""
    from recommend import services
    from recommend.models import TrackEmbedding, vector_to_bytes

    def put(vectors: dict):
        for track, vector in vectors.items():
            vector = np.asarray(vector, dtype=np.float32)
            TrackEmbedding.objects.update_or_create(
                track=track,
                model_version=model_version,
                defaults={"vector": vector_to_bytes(vector), "dim": len(vector), "sigma_mean": 0.1},
            )
        services.index_rebuild(model_version=model_version)

    return put


def clustered(n_dims: int, axis: int, seed: int) -> np.ndarray:
    """A vector near one axis: tracks of one collection sit together in the latent space."""
    rng = np.random.default_rng(seed)
    vector = rng.normal(0, 0.15, n_dims)
    vector[axis] += 1.0
    return vector
