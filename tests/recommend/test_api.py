"""GET /api/v1/tracks/{id}/similar/ and GET /api/v1/feed/."""

from __future__ import annotations

import numpy as np
import pytest

from catalog import services as catalog_services
from generation import services as generation_services
from generation.models import GeneratedTrack, GenerationJob
from recommend import algorithms, feed_items, index_readers, services, taste

pytestmark = pytest.mark.django_db


def unit(*values, dim=16):
    v = np.zeros(dim, dtype=np.float32)
    v[: len(values)] = values
    return v


# --- similar ---------------------------------------------------------------------------------------


def test_similar_is_open_to_anyone_and_excludes_the_track_itself(anon_client, embedded_tracks):
    tracks = embedded_tracks(6)
    response = anon_client.get(f"/api/v1/tracks/{tracks[0].pk}/similar/?k=3")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["track_id"] == tracks[0].pk
    results = body["results"]
    assert len(results) == 3
    assert tracks[0].pk not in [r["track"]["id"] for r in results]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
    assert {"title", "midi_url"} <= set(results[0]["track"])
    assert len(anon_client.get(f"/api/v1/tracks/{tracks[0].pk}/similar/").json()["results"]) == 5  # k=10, 5 others


def test_similar_ranks_by_cosine(anon_client, model_version, track_factory, put_embeddings):
    a, b, c, d = (track_factory() for _ in range(4))
    put_embeddings(model_version, {a: unit(1, 0), b: unit(0.9, 0.1), c: unit(0, 1), d: unit(-1, 0)})
    results = anon_client.get(f"/api/v1/tracks/{a.pk}/similar/").json()["results"]
    assert [r["track"]["id"] for r in results] == [b.pk, c.pk, d.pk]
    assert results[0]["score"] == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-5)
    assert results[-1]["score"] == pytest.approx(-1.0, abs=1e-5)


def test_similar_errors(anon_client, model_version, embedded_tracks, track_factory):
    embedded_tracks(2)
    response = anon_client.get("/api/v1/tracks/999999/similar/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    fresh = track_factory()  # not embedded yet
    response = anon_client.get(f"/api/v1/tracks/{fresh.pk}/similar/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_embedded"
    assert "no embedding yet" in response.json()["error"]["message"]
    for bad in ("0", "101", "x"):
        response = anon_client.get(f"/api/v1/tracks/{fresh.pk}/similar/?k={bad}")
        assert response.status_code == 400 and "k" in response.json()["error"]["message"]


def test_similar_without_an_active_model_is_a_503(anon_client, track_factory):
    track = track_factory()
    response = anon_client.get(f"/api/v1/tracks/{track.pk}/similar/")
    assert response.status_code == 503 and response.json()["error"]["code"] == "no_model"


def test_a_deleted_track_never_appears_in_similar_or_feed(
    user, user_client, anon_client, model_version, track_factory, put_embeddings
):
    a, b, c, gone = (track_factory() for _ in range(4))
    put_embeddings(model_version, {a: unit(1, 0), b: unit(0, 1), c: unit(-1, 0), gone: unit(1, 0.01)})
    catalog_services.rating_set(user=user, track=a, score=5)
    gone_id = gone.pk
    catalog_services.track_delete(track=gone)  # the index still holds it until the removal task runs
    assert gone_id in index_readers.index_reader(model_version_id=model_version.pk).index.ids()
    similar = [r["track"]["id"] for r in anon_client.get(f"/api/v1/tracks/{a.pk}/similar/").json()["results"]]
    assert gone_id not in similar and similar[0] == b.pk
    for kind in ("recommended", "mixed"):
        feed = [r["track"]["id"] for r in user_client.get(f"/api/v1/feed/?kind={kind}").json()["results"]]
        assert gone_id not in feed and feed
    services.index_remove(track_ids=[gone_id])
    assert gone_id not in index_readers.index_reader(model_version_id=model_version.pk).index.ids()


# --- feed ------------------------------------------------------------------------------------------


def test_feed_requires_authentication(anon_client):
    response = anon_client.get("/api/v1/feed/")
    assert response.status_code == 401
    assert response.json()["error"]["status"] == 401


def test_feed_rejects_an_unknown_kind(user_client):
    response = user_client.get("/api/v1/feed/?kind=loud")
    assert response.status_code == 400 and "kind" in response.json()["error"]["message"]


def test_feed_excludes_rated_tracks_and_says_why(user, user_client, model_version, track_factory, put_embeddings):
    liked, disliked, near, middle, far = (track_factory() for _ in range(5))
    put_embeddings(
        model_version,
        {liked: unit(1, 0), disliked: unit(-1, 0.1), near: unit(0.95, 0.2), middle: unit(0.1, 1), far: unit(-1, -0.1)},
    )
    catalog_services.rating_set(user=user, track=liked, score=5)
    catalog_services.rating_set(user=user, track=disliked, score=1)
    body = user_client.get("/api/v1/feed/").json()
    ids = [r["track"]["id"] for r in body["results"]]
    assert liked.pk not in ids and disliked.pk not in ids
    assert ids[0] == near.pk and ids[-1] == far.pk
    assert body["results"][0]["reason"] == f"near {liked.title}, which you rated 5"
    assert body["results"][0]["source"] == "recommended"
    assert body["count"] == 3


def test_taste_vectors_weigh_likes_and_push_away_dislikes(user, model_version, track_factory, put_embeddings):
    a, b, c = (track_factory() for _ in range(3))
    put_embeddings(model_version, {a: unit(1, 0), b: unit(0, 1), c: unit(-1, 0)})
    catalog_services.rating_set(user=user, track=a, score=5)  # weight 2
    catalog_services.rating_set(user=user, track=b, score=4)  # weight 1
    tastes = taste.taste_vectors(user=user)
    assert len(tastes) == 1
    mean = np.asarray([0, 1 / 3] + [0] * 14, dtype=np.float32)  # catalog mean of the unit vectors
    expected = mean + (2 * (unit(1, 0) - mean) + 1 * (unit(0, 1) - mean)) / 3
    np.testing.assert_allclose(tastes[0].vector, expected, atol=1e-6)  # = (2a + b) / 3
    catalog_services.rating_set(user=user, track=c, score=1)  # push, weight 2
    pushed = taste.taste_vectors(user=user)[0].vector
    assert pushed[0] > tastes[0].vector[0]  # moved away from c, which lies at -x
    catalog_services.rating_set(user=user, track=c, score=3)  # neutral: ignored
    np.testing.assert_allclose(taste.taste_vectors(user=user)[0].vector, expected, atol=1e-6)


def test_separate_groups_of_likes_get_their_own_taste_vectors(
    user, user_client, model_version, track_factory, put_embeddings
):
    liked = [track_factory(title=f"Jig {i}") for i in range(3)] + [
        track_factory(title=f"Chorale {i}") for i in range(3)
    ]
    jig_like, chorale_like = track_factory(title="unrated jig"), track_factory(title="unrated chorale")
    rng = np.random.default_rng(0)
    vectors = {t: unit(1, 0, *(0.05 * rng.standard_normal(3))) for t in liked[:3]}
    vectors |= {t: unit(0, 1, *(0.05 * rng.standard_normal(3))) for t in liked[3:]}
    vectors |= {jig_like: unit(1, 0.05), chorale_like: unit(0.05, 1)}
    vectors |= {track_factory(): unit(0, 0, 1), track_factory(): unit(0, 0, 0, 1)}
    put_embeddings(model_version, vectors)
    for track in liked:
        catalog_services.rating_set(user=user, track=track, score=5)
    tastes = taste.taste_vectors(user=user)
    assert len(tastes) == 2
    assert sorted(len(t.likes) for t in tastes) == [3, 3]
    results = user_client.get("/api/v1/feed/").json()["results"]
    top_two = {r["track"]["id"]: r["reason"] for r in results[:2]}
    assert set(top_two) == {jig_like.pk, chorale_like.pk}  # one from each group, not two of one
    assert top_two[jig_like.pk].startswith("near Jig ")
    assert top_two[chorale_like.pk].startswith("near Chorale ")


def test_taste_split_silhouette_is_the_cosine_silhouette():
    """The score that decides whether likes split into groups, against the textbook definition
    computed the slow way (recommend.algorithms.silhouette)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 4))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dist = 1.0 - x @ x.T

    def textbook(labels):
        values = []
        for i in range(len(x)):
            own = [j for j in range(len(x)) if labels[j] == labels[i] and j != i]
            a = dist[i, own].mean()
            b = min(dist[i, labels == c].mean() for c in set(labels.tolist()) if c != labels[i])
            values.append((b - a) / max(a, b))
        return float(np.mean(values))

    for labels in ([0, 0, 0, 1, 1, 1, 2, 2, 2], [0, 0, 1, 1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 0, 1, 0, 0]):
        labels = np.asarray(labels)
        assert algorithms.silhouette(x, labels) == pytest.approx(textbook(labels))
    assert algorithms.silhouette(x, np.asarray([0] * 8 + [1])) == -1.0  # a group of one splits nothing
    assert algorithms.silhouette(x, np.zeros(9, dtype=int)) == -1.0


def test_mmr_prefers_variety_over_near_duplicates():
    items = [
        feed_items.FeedItem(1, 0.99, "", "recommended", unit(1, 0)),
        feed_items.FeedItem(2, 0.98, "", "recommended", unit(1, 0.01)),
        feed_items.FeedItem(3, 0.85, "", "recommended", unit(0.6, 0.8)),
    ]
    assert [it.track_id for it in feed_items.mmr(items, 3)] == [1, 3, 2]
    assert [it.track_id for it in feed_items.mmr(items, 3, lam=1.0)] == [1, 2, 3]


def test_each_reason_names_the_nearest_liked_track(user, user_client, model_version, track_factory, put_embeddings):
    """Two likes close enough to make one taste: each recommended track is explained by the liked
    track it lies nearest to, not by any other like of the group."""
    reel, air = track_factory(title="The Reel"), track_factory(title="The Air")
    by_reel, by_air = track_factory(title="by the reel"), track_factory(title="by the air")
    put_embeddings(
        model_version,
        {reel: unit(1, 0), air: unit(0.6, 0.8), by_reel: unit(0.99, 0.05), by_air: unit(0.55, 0.83)}
        | {track_factory(): unit(0, 0, 1), track_factory(): unit(0, 0, 0, 1)},
    )
    catalog_services.rating_set(user=user, track=reel, score=5)
    catalog_services.rating_set(user=user, track=air, score=4)
    assert len(taste.taste_vectors(user=user)) == 1  # one group: the reason picks inside it
    reasons = {r["track"]["id"]: r["reason"] for r in user_client.get("/api/v1/feed/").json()["results"]}
    assert reasons[by_reel.pk] == "near The Reel, which you rated 5"
    assert reasons[by_air.pk] == "near The Air, which you rated 4"


def test_cold_start_user_gets_a_diverse_feed(user_client, model_version, track_factory, put_embeddings):
    """Without ratings the first page samples every part of the catalog (round-robin over its groups),
    not the most typical tunes of its largest part."""
    rng = np.random.default_rng(0)
    sizes = {"reels": 5, "jigs": 4, "chorales": 4, "airs": 3}  # 16 tracks: k-means with 4 groups
    vectors, collection_of = {}, {}
    for axis, (collection, size) in enumerate(sizes.items()):
        for _ in range(size):
            track = track_factory(collection=collection)
            direction = np.zeros(16, dtype=np.float32)
            direction[axis] = 1.0
            vectors[track] = direction + 0.05 * rng.standard_normal(16).astype(np.float32)
            collection_of[track.pk] = collection
    put_embeddings(model_version, vectors)
    body = user_client.get(f"/api/v1/feed/?page_size={len(sizes)}").json()
    assert body["count"] == 16
    assert len(body["results"]) == len(sizes) and body["next"]
    assert all(r["reason"].startswith("to start with: typical of") for r in body["results"])
    first = [r["track"]["id"] for r in body["results"]]
    assert {collection_of[t] for t in first} == set(sizes)  # one tune from each part of the catalog
    assert {r["reason"] for r in body["results"]} == {
        f"to start with: typical of {size} similar tunes, mostly {collection}" for collection, size in sizes.items()
    }
    second = user_client.get(body["next"]).json()["results"]
    ids = first + [r["track"]["id"] for r in second]
    assert len(set(ids)) == 2 * len(sizes) and set(ids) <= set(collection_of)
    assert {collection_of[t] for t in ids[len(sizes) :]} == set(sizes)  # the second round goes round again


def test_feed_without_any_index_falls_back_to_popular_tracks(
    user, user_client, other_user, django_user_model, track_factory
):
    """Best average first, more ratings first among equal averages, never-rated tracks last (newest
    first); the user's own rated tracks and generated tracks are left out."""
    older, newer = track_factory(), track_factory()
    best, more_votes, fewer_votes, mine = (track_factory() for _ in range(4))
    generated = track_factory(is_generated=True)
    third = django_user_model.objects.create_user(username="third", password="a-long-passphrase-4")
    catalog_services.rating_set(user=other_user, track=best, score=5)
    catalog_services.rating_set(user=other_user, track=more_votes, score=4)
    catalog_services.rating_set(user=third, track=more_votes, score=4)
    catalog_services.rating_set(user=other_user, track=fewer_votes, score=4)
    catalog_services.rating_set(user=other_user, track=generated, score=5)
    catalog_services.rating_set(user=other_user, track=mine, score=5)
    catalog_services.rating_set(user=user, track=mine, score=5)
    body = user_client.get("/api/v1/feed/").json()
    assert [r["track"]["id"] for r in body["results"]] == [best.pk, more_votes.pk, fewer_votes.pk, newer.pk, older.pk]
    assert {(r["reason"], r["source"]) for r in body["results"]} == {("popular in the catalog", "recommended")}
    assert [r["score"] for r in body["results"]] == [5.0, 4.0, 4.0, 0.0, 0.0]


def _generated(track_factory, model_version, latent, title):
    track = track_factory(is_generated=True, title=title)
    GeneratedTrack.objects.create(track=track, model_version=model_version, latent=list(map(float, latent)))
    return track


def test_generated_and_mixed_feeds(user, user_client, model_version, track_factory, put_embeddings, monkeypatch):
    from recommend import tasks

    monkeypatch.setattr(tasks.feed_top_up_task, "delay", lambda user_id: None)
    liked, other = track_factory(title="Loved"), track_factory()
    close = _generated(track_factory, model_version, unit(0.9, 0.1), "close")
    far = _generated(track_factory, model_version, unit(-1, 0), "far")
    rated = _generated(track_factory, model_version, unit(1, 0), "rated")
    put_embeddings(model_version, {liked: unit(1, 0), other: unit(0.8, 0.3), far: unit(-1, 0.05)})  # close: latent only
    catalog_services.rating_set(user=user, track=liked, score=5)
    catalog_services.rating_set(user=user, track=rated, score=2)
    body = user_client.get("/api/v1/feed/?kind=generated").json()
    assert [r["track"]["id"] for r in body["results"]] == [close.pk, far.pk]
    assert body["results"][0]["source"] == "generated"
    assert body["results"][0]["reason"] == "composed near Loved, which you rated 5"
    recommended = [r["track"]["id"] for r in user_client.get("/api/v1/feed/").json()["results"]]
    assert recommended == [other.pk]  # generated tracks stay out of the catalog feed
    mixed = user_client.get("/api/v1/feed/?kind=mixed").json()["results"]
    assert [r["source"] for r in mixed] == ["recommended", "generated", "generated"]


def test_generated_feed_without_ratings_shows_the_newest_melodies(
    user, user_client, model_version, track_factory, monkeypatch
):
    from recommend import tasks

    monkeypatch.setattr(tasks.feed_top_up_task, "delay", lambda user_id: None)
    made = [_generated(track_factory, model_version, unit(1, i), f"new {i}") for i in range(3)]
    results = user_client.get("/api/v1/feed/?kind=generated").json()["results"]
    assert [r["track"]["id"] for r in results] == [t.pk for t in reversed(made)]
    assert {(r["reason"], r["source"], r["score"]) for r in results} == {("new from the model", "generated", 0.0)}


def test_generated_tracks_are_explained_by_the_taste_group_they_are_near(
    user, user_client, model_version, track_factory, put_embeddings, monkeypatch
):
    """The likes split in two groups; melodies near only the second group still name one of its likes."""
    from recommend import tasks

    monkeypatch.setattr(tasks.feed_top_up_task, "delay", lambda user_id: None)
    jigs = [track_factory(title=f"Jig {i}") for i in range(3)]
    chorales = [track_factory(title=f"Chorale {i}") for i in range(3)]
    rng = np.random.default_rng(1)
    vectors = {t: unit(1, 0, *(0.05 * rng.standard_normal(3))) for t in jigs}
    vectors |= {t: unit(0, 1, *(0.05 * rng.standard_normal(3))) for t in chorales}
    vectors |= {track_factory(): unit(0, 0, 1), track_factory(): unit(0, 0, 0, 1)}
    put_embeddings(model_version, vectors)
    for track in jigs:
        catalog_services.rating_set(user=user, track=track, score=5)  # the heavier group: taste 0
    for track in chorales:
        catalog_services.rating_set(user=user, track=track, score=4)
    assert [len(t.likes) for t in taste.taste_vectors(user=user)] == [3, 3]
    near_chorales = [_generated(track_factory, model_version, unit(0.05, 1, 0.02 * i), f"g{i}") for i in range(2)]
    results = user_client.get("/api/v1/feed/?kind=generated").json()["results"]
    assert {r["track"]["id"] for r in results} == {t.pk for t in near_chorales}
    assert all(r["reason"].startswith("composed near Chorale ") for r in results)


def test_mixed_feed_takes_two_recommended_then_one_generated(
    user, user_client, model_version, track_factory, put_embeddings, monkeypatch
):
    from recommend import tasks

    monkeypatch.setattr(tasks.feed_top_up_task, "delay", lambda user_id: None)
    liked = track_factory(title="Loved")
    catalog = [track_factory() for _ in range(5)]
    put_embeddings(model_version, {liked: unit(1, 0)} | {t: unit(1, 0.2 * (i + 1)) for i, t in enumerate(catalog)})
    for i in range(3):
        _generated(track_factory, model_version, unit(1, 0.1 * (i + 1)), f"g{i}")
    catalog_services.rating_set(user=user, track=liked, score=5)
    mixed = user_client.get("/api/v1/feed/?kind=mixed").json()["results"]
    r, g = "recommended", "generated"
    # two catalog tracks, one generated, again, then what is left of each (5 + 3 in all)
    assert [item["source"] for item in mixed] == [r, r, g, r, r, g, r, g]


def test_four_likes_in_two_clear_pairs_make_two_tastes(user, model_version, track_factory, put_embeddings):
    pairs = [track_factory() for _ in range(4)]
    put_embeddings(
        model_version,
        {pairs[0]: unit(1, 0), pairs[1]: unit(1, 0.05), pairs[2]: unit(0, 1), pairs[3]: unit(0.05, 1)}
        | {track_factory(): unit(0, 0, 1)},
    )
    for track in pairs:
        catalog_services.rating_set(user=user, track=track, score=5)
    assert sorted(sorted(a.track_id for a in t.likes) for t in taste.taste_vectors(user=user)) == [
        sorted([pairs[0].pk, pairs[1].pk]),
        sorted([pairs[2].pk, pairs[3].pk]),
    ]


def test_top_up_asks_for_similar_jobs_near_liked_tracks(
    user, model_version, track_factory, put_embeddings, monkeypatch, settings
):
    woken = []
    monkeypatch.setattr(generation_services, "generation_job_wake", lambda job_id, countdown=None: woken.append(job_id))
    settings.REFRAIN_FEED_GENERATED_TARGET = 5
    liked = track_factory(title="Loved")
    put_embeddings(model_version, {liked: unit(1, 0), track_factory(): unit(0, 1)})
    assert services.generated_feed_top_up(user=user) == []  # nothing liked yet
    catalog_services.rating_set(user=user, track=liked, score=5)
    jobs = services.generated_feed_top_up(user=user)
    assert len(jobs) == 1
    job = jobs[0]
    assert job.kind == "similar" and job.params["track_ids"] == [liked.pk] and job.params["count"] == 5
    assert job.owner == user
    assert services.generated_feed_top_up(user=user) == []  # one pending job at a time
    GenerationJob.objects.filter(pk=job.pk).update(status="done")
    for i in range(5):  # enough near, unrated generated tracks now
        _generated(track_factory, model_version, unit(1, 0.1 * i), f"g{i}")
    assert services.generated_feed_top_up(user=user) == []


def test_feed_asks_for_a_top_up_without_waiting(
    user, user_client, model_version, track_factory, put_embeddings, monkeypatch
):
    from recommend import tasks

    sent = []
    monkeypatch.setattr(tasks.feed_top_up_task, "delay", sent.append)
    put_embeddings(model_version, {track_factory(): unit(1, 0)})
    assert user_client.get("/api/v1/feed/?kind=generated").status_code == 200
    assert user_client.get("/api/v1/feed/?kind=mixed").status_code == 200
    assert sent == [user.pk]  # at most once a minute per user
    assert user_client.get("/api/v1/feed/").status_code == 200
    assert sent == [user.pk]


def test_a_generated_track_indexed_after_the_catalog_summary_stays_out_of_the_catalog_feed(
    user, user_client, model_version, track_factory, put_embeddings, settings
):
    """The catalog summary is reused while the index grows by less than SUMMARY_REUSE_SHARE, and
    generated tracks are indexed all the time: one indexed since must still be told from the catalog,
    before the feed is chosen (not only dropped afterwards, which leaves the feed short)."""
    settings.REFRAIN_FEED_SIZE = 5
    n = int(2 / index_readers.SUMMARY_REUSE_SHARE) + 1  # one more track stays under the reuse share
    liked, *catalog = (track_factory() for _ in range(n))
    put_embeddings(model_version, {liked: unit(1, 0)} | {t: unit(i % 3 - 1, 1, i) for i, t in enumerate(catalog)})
    catalog_services.rating_set(user=user, track=liked, score=5)
    before = [r["track"]["id"] for r in user_client.get("/api/v1/feed/").json()["results"]]
    assert len(before) == 5
    composed = _generated(track_factory, model_version, unit(1, 0.01), "composed")
    put_embeddings(model_version, {composed: unit(1, 0.01)}, rebuild=False)
    services.index_add(track_ids=[composed.pk], model_version=model_version)
    assert composed.pk in index_readers.index_reader(model_version_id=model_version.pk).index.ids().tolist()
    after = [r["track"]["id"] for r in user_client.get("/api/v1/feed/").json()["results"]]
    assert composed.pk not in after and len(after) == 5
