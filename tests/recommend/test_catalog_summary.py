"""The feed's catalog summary (mean, vectors, cold-start groups) is reused across small index
changes, and tracks indexed after it was taken still reach the feed."""

from __future__ import annotations

import numpy as np
import pytest

from catalog import services as catalog_services
from recommend import index_readers

pytestmark = pytest.mark.django_db


def direction(angle: float) -> np.ndarray:
    v = np.zeros(16, dtype=np.float32)
    v[0], v[1] = np.cos(angle), np.sin(angle)
    return v


@pytest.fixture
def catalog_of_40(model_version, track_factory, put_embeddings):
    tracks = [track_factory() for _ in range(40)]
    put_embeddings(model_version, {t: direction(0.5 + i * 0.07) for i, t in enumerate(tracks)})
    return tracks


def test_a_track_indexed_after_the_summary_still_reaches_the_feed(
    user, user_client, model_version, track_factory, put_embeddings, catalog_of_40
):
    liked = catalog_of_40[0]
    catalog_services.rating_set(user=user, track=liked, score=5)
    user_client.get("/api/v1/feed/")  # takes the summary at this index version
    _, index = index_readers.serving_index()
    before = index_readers.catalog_summary(index)

    newcomer = track_factory()  # 1 track more: well within the reuse share, so the summary stays
    put_embeddings(model_version, {newcomer: direction(0.5)}, rebuild=True)
    _, index = index_readers.serving_index()
    assert index_readers.catalog_summary(index) is before and newcomer.pk not in before["ids"]
    ids = [r["track"]["id"] for r in user_client.get("/api/v1/feed/").json()["results"]]
    assert ids[0] == newcomer.pk  # found by the search, told catalog and given its vector from the database


def test_the_summary_is_taken_again_when_the_catalog_grew_past_the_share(
    model_version, track_factory, put_embeddings, catalog_of_40
):
    _, index = index_readers.serving_index()
    before = index_readers.catalog_summary(index)
    more = [track_factory() for _ in range(3)]  # 43 / 40: over 5 %
    put_embeddings(model_version, {t: direction(3.0) for t in more}, rebuild=True)
    _, index = index_readers.serving_index()
    after = index_readers.catalog_summary(index)
    assert after is not before and {t.pk for t in more} <= set(after["ids"].tolist())


def test_cold_start_groups_are_reused_while_the_summary_is(
    user_client, model_version, track_factory, put_embeddings, catalog_of_40
):
    first = user_client.get("/api/v1/feed/").json()["results"]
    _, index = index_readers.serving_index()
    groups = index_readers.catalog_summary(index)["cold_start"]
    put_embeddings(model_version, {track_factory(): direction(1.0)}, rebuild=True)
    _, index = index_readers.serving_index()
    assert index_readers.catalog_summary(index)["cold_start"] is groups
    assert [r["track"]["id"] for r in user_client.get("/api/v1/feed/").json()["results"]] == [
        r["track"]["id"] for r in first
    ]
