"""Activating a new model version swaps the feeds' latent space without a gap: the previous
version's index keeps serving until the new version's first full embedding pass has completed."""

from __future__ import annotations

import numpy as np
import pytest

from catalog import services as catalog_services
from generation import services as generation_services
from recommend import index_readers, selectors, services, tasks
from recommend.models import IndexStatus, TrackEmbedding

pytestmark = pytest.mark.django_db


def unit(*xs: float) -> np.ndarray:
    v = np.zeros(16, dtype=np.float32)  # the tiny test model's z_dim
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


def test_feeds_keep_the_previous_index_until_the_new_version_is_embedded(
    user, user_client, model_version, track_factory, put_embeddings, tiny_checkpoint
):
    liked, near, far = (track_factory() for _ in range(3))
    put_embeddings(model_version, {liked: unit(1, 0), near: unit(0.9, 0.3), far: unit(-1, 0)})
    services.index_mark_complete(model_version=model_version)
    catalog_services.rating_set(user=user, track=liked, score=5)
    before = [r["track"]["id"] for r in user_client.get("/api/v1/feed/").json()["results"]]
    assert before == [near.pk, far.pk]

    new = generation_services.model_version_register(name="next", checkpoint_path=str(tiny_checkpoint))
    assert new.is_active and not TrackEmbedding.objects.filter(model_version=new).exists()
    # No embeddings for the new version yet: the feed and similar still answer from the old one.
    assert selectors.serving_version() == model_version
    assert [r["track"]["id"] for r in user_client.get("/api/v1/feed/").json()["results"]] == before
    similar = user_client.get(f"/api/v1/tracks/{liked.pk}/similar/").json()
    assert similar["model_version"] == model_version.pk and similar["results"][0]["track"]["id"] == near.pk

    assert tasks.embed_missing_task() == 3  # the whole catalog, one chunk: the pass completes
    assert IndexStatus.objects.get(model_version=new).complete
    assert selectors.serving_version() == new
    assert user_client.get(f"/api/v1/tracks/{liked.pk}/similar/").json()["model_version"] == new.pk
    feed = [r["track"]["id"] for r in user_client.get("/api/v1/feed/").json()["results"]]
    assert sorted(feed) == sorted([near.pk, far.pk])  # same candidates, ranked in the new space


def test_a_version_becomes_complete_only_when_its_pass_ends(model_version, track_factory, monkeypatch):
    for _ in range(3):
        track_factory()
    requeued = []
    monkeypatch.setattr(tasks.embed_missing_task, "delay", lambda *args: requeued.append(args))
    tasks.embed_missing_task(2)
    assert requeued and not IndexStatus.objects.filter(model_version=model_version, complete=True).exists()
    tasks.embed_missing_task(*requeued[-1])
    status = IndexStatus.objects.get(model_version=model_version)
    assert status.complete and status.tracks == 3 and status.completed_at is not None


def test_a_fresh_install_serves_its_only_version_while_it_fills(model_version, track_factory):
    assert not IndexStatus.objects.exists()
    assert selectors.serving_version() == model_version


def test_without_an_active_version_nothing_serves(db):
    assert selectors.serving_version() is None
    assert index_readers.serving_index() == (None, None)


def test_embed_catalog_marks_the_version_complete(model_version, track_factory):
    from django.core.management import call_command

    track_factory()
    call_command("embed_catalog", "--no-progress")
    assert IndexStatus.objects.get(model_version=model_version).complete
