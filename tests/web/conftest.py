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
def embedded(model_version, put_embeddings):
    """Store chosen vectors as the tracks' embeddings (no VAE), then rebuild the index."""
    return lambda vectors: put_embeddings(model_version, vectors)


def clustered(n_dims: int, axis: int, seed: int) -> np.ndarray:
    """A vector near one axis: tracks of one collection sit together in the latent space."""
    rng = np.random.default_rng(seed)
    vector = rng.normal(0, 0.15, n_dims)
    vector[axis] += 1.0
    return vector
