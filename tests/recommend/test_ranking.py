"""The blended feed (recommend.ranking): order invariance, fold-in, the learned ranker, cold start,
and one code path shared by the API and the evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog import services as catalog_services
from recommend import collaborative, evaluation, feeds, model_readers, model_services, ranking
from recommend.index import IndexConfig, VectorIndex
from recommend.ranker import FEATURES, Ranker, default_ranker

# --- a fixture world without a database: 60 tracks in 4 directions, 40 listeners ------------------------

N_TRACKS, DIM = 60, 8


def _world(seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = np.arange(100, 100 + N_TRACKS)
    centres = np.eye(DIM, dtype=np.float32)[:4]
    group = np.arange(N_TRACKS) % 4
    vectors = centres[group] + 0.3 * rng.standard_normal((N_TRACKS, DIM)).astype(np.float32)
    catalog = evaluation.served_catalog(ids, vectors)
    users, tracks, scores, times = [], [], [], []
    for u in range(40):
        liked_group = u % 4
        for i in rng.choice(N_TRACKS, 15, replace=False):
            users.append(u)
            tracks.append(int(ids[i]))
            scores.append(5 if group[i] == liked_group else int(rng.integers(1, 4)))
            times.append(float(rng.uniform(0, 1e6)))
    log = ranking.RatingLog(np.asarray(users), np.asarray(tracks), np.asarray(scores), np.asarray(times))
    return ids, vectors, catalog, log


@pytest.fixture(scope="module")
def world():
    ids, vectors, catalog, log = _world()
    signals, ranker = ranking.learn(log, catalog, ids, now=1e6)
    return ids, vectors, catalog, log, signals, ranker


RATINGS = [(100, 5, "a"), (104, 5, "b"), (108, 4, "c"), (101, 1, "d"), (102, 3, "e"), (112, 5, "f"), (116, 2, "g")]


@settings(max_examples=30, deadline=None)
@given(order=st.permutations(RATINGS), resaved=st.integers(0, len(RATINGS) - 1))
def test_the_feed_does_not_depend_on_the_order_of_ratings(world, order, resaved):
    _, _, catalog, _, signals, ranker = world
    expected = ranking.rank_feed(ratings=RATINGS, catalog=catalog, signals=signals, ranker=ranker, size=15)
    # re-saving a rating with the same score moves it to the front of a newest-first list
    order = [order[resaved], *order[:resaved], *order[resaved + 1 :]]
    got = ranking.rank_feed(ratings=order, catalog=catalog, signals=signals, ranker=ranker, size=15)
    assert [(it.track_id, it.reason) for it in got] == [(it.track_id, it.reason) for it in expected]
    assert [it.score for it in got] == pytest.approx([it.score for it in expected], abs=1e-9)


def test_fold_in_equals_the_als_user_step_and_the_refit(world):
    from implicit.als import AlternatingLeastSquares

    ids, _, _, log, _, _ = world
    position = {int(t): i for i, t in enumerate(ids.tolist())}
    conf = collaborative.confidence(log.scores)
    items = np.asarray([position[int(t)] for t in log.track_ids])
    matrix = sp.csr_matrix((conf, (log.users, items)), shape=(40, N_TRACKS), dtype=np.float32)
    matrix.eliminate_zeros()
    model = AlternatingLeastSquares(factors=8, regularization=1.0, alpha=10.0, iterations=30, random_state=0)
    model.fit(matrix, show_progress=False)
    signals = collaborative.Signals(
        track_ids=ids,
        item_factors=np.asarray(model.item_factors),
        damped_mean=np.zeros(N_TRACKS, np.float32),
        rating_count=np.zeros(N_TRACKS, np.float32),
        recent_likes=np.zeros(N_TRACKS, np.float32),
        age_days=np.zeros(N_TRACKS, np.float32),
        regularization=1.0,
        alpha=10.0,
    )
    for u in (0, 7, 33):
        mine = log.users == u
        folded = collaborative.fold_in(signals, log.track_ids[mine], log.scores[mine])
        # implicit's own solve of the same user against the same item factors
        np.testing.assert_allclose(folded, np.ravel(model.recalculate_user(u, matrix[u])), rtol=1e-3, atol=1e-3)
        # and the factors the full refit gave this user (its last user step preceded the last item step)
        refit = np.asarray(model.user_factors[u])
        assert np.linalg.norm(folded - refit) <= 0.05 * np.linalg.norm(refit)
    assert collaborative.fold_in(signals, [100], [1]) is None  # a dislike alone carries no confidence


def test_signals_survive_their_blob(world):
    _, _, _, _, signals, _ = world
    back = collaborative.Signals.from_bytes(signals.to_bytes(), version=7)
    assert back.version == 7 and back.alpha == signals.alpha
    np.testing.assert_array_equal(back.item_factors, signals.item_factors)
    np.testing.assert_array_equal(back.damped_mean, signals.damped_mean)


def test_the_ranker_learns_from_the_log_and_prefers_content_and_collaborative_signal(world):
    _, _, _, _, _, ranker = world
    assert not ranker.metrics["default"] and ranker.metrics["valid_auc"] > 0.7
    weights = ranker.raw_weights()
    assert set(weights) == set(FEATURES)
    assert weights["content"] + weights["content_x_user"] * np.log1p(10) > 0
    back = Ranker.from_json(ranker.to_json(), version=3)
    np.testing.assert_allclose(back.score(np.ones((2, len(FEATURES)))), ranker.score(np.ones((2, len(FEATURES)))))


def test_too_little_data_gives_the_default_ranker():
    ids, _, catalog, log = _world()
    keep = np.arange(40)
    small = ranking.RatingLog(log.users[keep], log.track_ids[keep], log.scores[keep], log.times[keep])
    _, ranker = ranking.learn(small, catalog, ids, now=1e6)
    assert ranker.metrics["default"] and np.array_equal(ranker.coef, default_ranker().coef)


def test_a_first_rating_changes_the_next_page(world):
    ids, _, catalog, _, signals, ranker = world
    cold = ranking.rank_feed(ratings=[], catalog=catalog, signals=signals, ranker=ranker, size=12)
    assert len(cold) == 12 and cold[-1].reason.startswith("to start with")  # the exploration slot
    assert not any(it.reason.startswith("to start with") for it in cold[:-1])
    warm = ranking.rank_feed(ratings=[(103, 5, "Reel")], catalog=catalog, signals=signals, ranker=ranker, size=10)
    assert [it.track_id for it in warm] != [it.track_id for it in cold] and 103 not in [it.track_id for it in warm]
    # the rated track's direction (every 4th track) now leads the page
    assert sum((it.track_id - 100) % 4 == 3 for it in warm[:5]) >= 4
    assert any(it.reason in ("near Reel, which you rated 5", "liked by listeners who liked Reel") for it in warm)


def test_the_evaluation_scores_the_served_function(world, monkeypatch):
    # The evaluation imports the very function the API's feed calls: there is no second implementation.
    assert evaluation.rank_feed is feeds.rank_feed is ranking.rank_feed
    ids, vectors, catalog, _, signals, ranker = world
    sim = evaluation.simulate(_facets(), evaluation.SimConfig(users=12, ratings_per_user=8, seed=2))
    tops, _, _ = evaluation.served_rankings(sim, ids, catalog, signals, ranker, 5)
    calls = []

    def reversed_feed(**kwargs):
        calls.append(kwargs["ratings"])
        return ranking.rank_feed(**kwargs)[::-1]

    monkeypatch.setattr(evaluation, "rank_feed", reversed_feed)
    changed, _, _ = evaluation.served_rankings(sim, ids, catalog, signals, ranker, 5)
    assert len(calls) == 12 + 1  # every user, then the cold start
    assert (changed[:, ::-1] == tops).all() and not (changed == tops).all()


def _facets():
    rng = np.random.default_rng(0)
    return evaluation.catalog_facets(
        region=rng.choice(["irish", "german"], N_TRACKS).tolist(),
        collection=["c"] * N_TRACKS,
        time_signature=rng.choice(["4/4", "6/8"], N_TRACKS).tolist(),
        key=rng.choice(["D major", "A minor"], N_TRACKS).tolist(),
        tempo_bpm=rng.uniform(60, 180, N_TRACKS),
        note_count=rng.integers(20, 200, N_TRACKS),
        duration_seconds=rng.uniform(10, 60, N_TRACKS),
    )


def test_the_served_catalog_searches_with_the_serving_index_class(world):
    _, vectors, catalog, _, _, _ = world
    found, _ = catalog.search(vectors[:1] / np.linalg.norm(vectors[:1]), 3, {100})
    direct = VectorIndex.build(np.arange(100, 160), vectors, IndexConfig(dim=DIM, use_gpu=False))
    assert found[0].tolist() == direct.search(vectors[:1], 3, exclude_ids=[100]).ids[0].tolist()


# --- through the database and the API ----------------------------------------------------------------


def _unit(*values, dim=16):
    v = np.zeros(dim, dtype=np.float32)
    v[: len(values)] = values
    return v


@pytest.fixture
def rated_world(db, model_version, track_factory, put_embeddings, django_user_model):
    """16 tracks in 4 directions, 12 listeners who each like one direction."""
    tracks = [track_factory(title=f"Tune {i}") for i in range(16)]
    rng = np.random.default_rng(1)
    put_embeddings(
        model_version, {t: _unit(*np.eye(4)[i % 4], *(0.1 * rng.standard_normal(3))) for i, t in enumerate(tracks)}
    )
    for u in range(12):
        listener = django_user_model.objects.create_user(username=f"listener{u}", password="a-long-passphrase-9")
        for i, t in enumerate(tracks):
            if rng.random() < 0.6:
                catalog_services.rating_set(
                    user=listener, track=t, score=5 if i % 4 == u % 4 else int(rng.integers(1, 4))
                )
    return tracks


def test_a_new_listeners_first_rating_changes_the_feed(user, user_client, rated_world):
    model_services.collaborative_refit()
    before = [r["track"]["id"] for r in user_client.get("/api/v1/feed/").json()["results"]]
    catalog_services.rating_set(user=user, track=rated_world[2], score=5)  # no refit in between
    results = user_client.get("/api/v1/feed/").json()["results"]
    after = [r["track"]["id"] for r in results]
    assert after != before and rated_world[2].pk not in after
    assert {t.pk for t in rated_world[2::4]} - {rated_world[2].pk} == set(after[:3])
    assert "Tune 2" in results[0]["reason"]


def test_resaving_a_rating_with_the_same_score_keeps_the_feed(
    user, user_client, model_version, track_factory, put_embeddings
):
    # Noisy directions, likes spread over them: how k-means groups the likes is the step that
    # depended on the order of the ratings (a re-saved rating moves to the front of a newest-first list).
    rng = np.random.default_rng(0)
    tracks = [track_factory(title=f"Tune {i}") for i in range(40)]
    centres = np.eye(8, dtype=np.float32)[:4]
    put_embeddings(
        model_version, {t: _unit(*(centres[i % 4] + 0.3 * rng.standard_normal(8))) for i, t in enumerate(tracks)}
    )
    scores = {0: 5, 4: 5, 8: 4, 1: 1, 2: 3, 12: 5, 16: 2, 5: 5, 9: 4, 13: 5}
    for i, score in scores.items():
        catalog_services.rating_set(user=user, track=tracks[i], score=score)
    before = user_client.get("/api/v1/feed/").json()["results"]
    for i in (8, 1, 13, 0):
        catalog_services.rating_set(user=user, track=tracks[i], score=scores[i])  # same score, now the newest
        assert user_client.get("/api/v1/feed/").json()["results"] == before


def test_trained_models_are_versioned_rows_every_process_reloads(rated_world, capsys):
    from django.core.management import call_command

    from recommend.models import CollaborativeModel, RankerModel

    assert model_readers.serving_signals() is None and model_readers.serving_ranker().metrics["default"]
    call_command("train_recommender")
    out = capsys.readouterr().out
    assert "content" in out and "collaborative" in out and "weights per feature" in out
    row = RankerModel.objects.get()
    assert isinstance(row.weights, dict) and row.weights["features"] == list(FEATURES)  # JSON, no pickle
    ranker = model_readers.serving_ranker()
    assert ranker.version == row.pk and ranker.coef.tolist() == row.weights["coef"]
    signals = model_readers.serving_signals()
    assert signals.version == CollaborativeModel.objects.get().pk and len(signals.track_ids) == 16
    assert model_readers.serving_signals() is signals  # loaded once
    newer = model_services.collaborative_refit()
    assert model_readers.serving_signals().version == newer.pk  # a newer row is picked up


def test_beat_refits_and_retrains(settings):
    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"recommend.tasks.refit_collaborative", "recommend.tasks.train_ranker"} <= schedule


def test_refit_task_stores_a_new_version(rated_world):
    from recommend import tasks
    from recommend.models import CollaborativeModel

    pk = tasks.refit_collaborative_task.run()
    assert CollaborativeModel.objects.get().pk == pk
    assert tasks.train_ranker_task.run() is not None
