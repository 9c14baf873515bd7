"""Fixtures for the recommendation tests: tracks with embeddings and a built index."""

from __future__ import annotations

import pytest


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
