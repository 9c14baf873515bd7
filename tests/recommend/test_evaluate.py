"""manage.py evaluate_recommender: same-collection precision@k for latent, pitch-class and random features;
simulated users ranking with every method (recommend.evaluation); the generated-feed check."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from recommend.management.commands.evaluate_recommender import chance_precision, precision_at_k

pytestmark = pytest.mark.django_db


def test_precision_at_k_and_chance():
    labels = np.asarray(["a", "a", "a", "b", "b", "b"])
    clustered = np.asarray([[1, 0], [1, 0.1], [1, -0.1], [0, 1], [0.1, 1], [-0.1, 1]], dtype=np.float32)
    assert precision_at_k(clustered, labels, 2) == 1.0
    assert precision_at_k(-clustered[[0, 3, 1, 4, 2, 5]], labels, 1) < 1.0
    assert chance_precision(labels) == pytest.approx(2 / 5)


def test_command_reports_every_representation(model_version, track_factory, put_embeddings, tmp_path):
    rng = np.random.default_rng(1)
    vectors = {}
    for _i in range(8):
        vectors[track_factory(collection="jigs")] = np.r_[1, 0, 0.1 * rng.standard_normal(14)]
        vectors[track_factory(collection="chorales")] = np.r_[0, 1, 0.1 * rng.standard_normal(14)]
    put_embeddings(model_version, vectors)
    out = StringIO()
    call_command(
        "evaluate_recommender", "--k", "3", "--sim-users", "0", "--json", str(tmp_path / "eval.json"), stdout=out
    )
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["tracks"] == 16 and result["per_label"] == {"chorales": 8, "jigs": 8}
    assert result["precision_at_k"]["latent"] == 1.0
    assert 0 <= result["precision_at_k"]["pitch_class"] <= 1 and 0 <= result["precision_at_k"]["random"] <= 1
    assert result["chance"] == pytest.approx(7 / 15, abs=1e-4)
    assert "latent" in out.getvalue() and "pitch_class" in out.getvalue()
    # simulated users who like jigs get jigs (the clusters are clean): 2 values x 5 users
    assert result["feed"]["users"] == 10
    assert result["feed"]["precision_at_k"] == 1.0 and result["feed"]["chance"] == 0.5
    from catalog.models import Rating, User

    assert not Rating.objects.exists() and not User.objects.filter(username__startswith="evaluate-").exists()


def test_command_needs_embeddings(model_version, track_factory):
    track_factory(collection="x")
    with pytest.raises(CommandError, match="embed_catalog"):
        call_command("evaluate_recommender")


# --- simulated users (recommend.evaluation) ---------------------------------------------------------


def test_recall_and_ndcg_on_a_hand_made_ranking():
    from recommend.evaluation import recall_ndcg

    ranking = np.asarray([7, 3, 9, 1, 4])
    recall, ndcg = recall_ndcg(ranking, {3, 4, 8}, k=5)
    assert recall == pytest.approx(2 / 3)
    dcg = 1 / np.log2(3) + 1 / np.log2(6)  # hits at ranks 2 and 5
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)  # three relevant items, all fit in the top 5
    assert ndcg == pytest.approx(dcg / idcg)
    assert recall_ndcg(ranking, {7}, k=5) == (1.0, 1.0)
    assert recall_ndcg(ranking, {4}, k=3) == (0.0, 0.0)  # outside the top k
    assert all(np.isnan(recall_ndcg(ranking, set(), k=5)))


def test_metrics_coverage_and_novelty():
    import scipy.sparse as sp

    from recommend.evaluation import evaluate_ranking

    # 2 users, 4 items; user 0 trained on item 0, user 1 on items 0 and 1; held-out likes: 2 and 3
    train = sp.csr_matrix(np.asarray([[5, 0, 0, 0], [4, 2, 0, 0]], dtype=np.float32))
    test = sp.csr_matrix(np.asarray([[0, 0, 5, 0], [0, 0, 0, 4]], dtype=np.float32))
    tops = np.asarray([[2, 1], [2, 3]])
    result = evaluate_ranking(tops, train, test, k=2, resamples=50)
    assert result["users"] == 2 and result["recall@2"]["mean"] == 1.0
    assert result["ndcg@2"]["mean"] == pytest.approx((1 + (1 / np.log2(3)) / 1) / 2, abs=1e-4)
    assert result["coverage"] == 0.75  # items 1, 2, 3 of 4
    # popularity (raters + 1) / (users + 1): item 1 -> 2/3, items 2 and 3 -> 1/3
    expected = np.mean([(np.log2(3) - np.log2(2) + np.log2(3)) / 2, np.log2(3)])
    assert result["novelty"]["mean"] == pytest.approx(expected, abs=1e-4)


def _small_simulation():
    from recommend.evaluation import SimConfig, catalog_facets, simulate

    rng = np.random.default_rng(0)
    n = 120
    facets = catalog_facets(
        region=rng.choice(["irish", "german", ""], n).tolist(),
        collection=["c"] * n,
        time_signature=rng.choice(["4/4", "6/8", "3/4"], n).tolist(),
        key=rng.choice(["D major", "A minor", ""], n).tolist(),
        tempo_bpm=rng.uniform(60, 180, n),
        note_count=rng.integers(20, 200, n),
        duration_seconds=rng.uniform(10, 60, n),
    )
    return facets, simulate(facets, SimConfig(users=40, ratings_per_user=12, seed=3))


def test_simulation_labels_scores_and_split():
    facets, sim = _small_simulation()
    assert set(facets["mode"]) <= {"major", "minor", ""} and set(facets["tempo"]) == {
        "tempo-low",
        "tempo-mid",
        "tempo-high",
    }
    assert sim.train.shape == sim.test.shape == (40, 120) and sim.affinity.shape == (40, 120)
    assert set(np.unique(sim.train.data)) <= {1, 2, 3, 4, 5}
    assert sim.train.multiply(sim.test).nnz == 0  # a rating is in training or in test, never both
    assert all(sum(w for _, _, w in taste) == pytest.approx(1.0) for taste in sim.tastes)
    # ratings follow the hidden taste: liked tracks have a higher true affinity than disliked ones
    coo = sim.train.tocoo()
    affinity = sim.affinity[coo.row, coo.col]
    assert affinity[coo.data >= 4].mean() > affinity[coo.data <= 2].mean() + 0.3


def test_random_exposure_is_unseen_tracks_and_leaves_the_rest_unchanged():
    from recommend import evaluation

    facets, sim = _small_simulation()
    without = evaluation.simulate(
        facets, evaluation.SimConfig(users=40, ratings_per_user=12, seed=3, random_exposure_items=0)
    )
    assert without.random_test is None
    assert (without.train != sim.train).nnz == 0 and (without.test != sim.test).nnz == 0
    seen = sim.train + sim.test
    assert sim.random_test.multiply(seen).nnz == 0  # only tracks the user had not rated
    expected = np.minimum(100, sim.random_test.shape[1] - np.diff(seen.indptr))  # 120 tracks: some users run out
    assert (np.diff(sim.random_test.indptr) == expected).all() and expected.max() == 100
    # Ordering by the hidden affinity beats a random order, and is near the ideal.
    oracle = evaluation.random_exposure_ndcg(sim.affinity, sim.random_test, 10)
    chance = evaluation.random_exposure_ndcg(evaluation.scores_random(sim.train), sim.random_test, 10)
    assert np.nanmean(oracle) > 0.8 and np.nanmean(oracle) > np.nanmean(chance) + 0.3


def test_random_exposure_ndcg_on_a_hand_made_case():
    import scipy.sparse as sp

    from recommend.evaluation import random_exposure_ndcg

    ratings = sp.csr_matrix(np.array([[5, 1, 3, 0], [1, 1, 0, 1]], dtype=np.float32))
    perfect = np.array([[3.0, 1.0, 2.0, 9.0], [0, 0, 0, 0]])
    assert random_exposure_ndcg(perfect, ratings, 2)[0] == pytest.approx(1.0)
    worst = np.array([[1.0, 3.0, 2.0, 0.0], [0, 0, 0, 0]])
    ideal = 31 + 7 / np.log2(3)
    assert random_exposure_ndcg(worst, ratings, 2)[0] == pytest.approx((1 + 7 / np.log2(3)) / ideal)
    assert np.isnan(random_exposure_ndcg(worst, ratings, 2)[1])  # all 1s: nothing to rank


def test_item_knn_ranks_what_co_occurs_with_a_users_likes_first():
    """Two groups of listeners, each liking one half of the catalog and disliking the other: for
    every user, item-kNN puts each unrated track of their own half above every track of the other."""
    import scipy.sparse as sp

    from recommend.evaluation import scores_item_knn, top_k

    rng = np.random.default_rng(0)
    users, items = 16, 12
    half = items // 2
    ratings = np.zeros((users, items), dtype=np.float32)
    for u in range(users):
        mine = np.arange(half) if u < users // 2 else np.arange(half, items)
        others = np.setdiff1d(np.arange(items), mine)
        ratings[u, rng.choice(mine, 3, replace=False)] = rng.choice([4, 5], 3)
        ratings[u, rng.choice(others, 2, replace=False)] = rng.choice([1, 2], 2)
    train = sp.csr_matrix(ratings)
    scores = scores_item_knn(train)
    ranked = top_k(scores, train, items)
    for u in range(users):
        mine = set(range(half)) if u < users // 2 else set(range(half, items))
        unrated_mine = mine - set(np.flatnonzero(ratings[u]).tolist())
        assert set(ranked[u][: len(unrated_mine)].tolist()) == unrated_mine


def test_item_knn_scores_are_rating_weighted_cosine_sums():
    """score(u, i) = sum_j (r_uj - 3) cos(i, j) over the user's rated tracks j, the cosine taken between
    the items' centred rating columns: the docstring's formula, computed here the slow way."""
    import scipy.sparse as sp

    from recommend.evaluation import scores_item_knn

    rng = np.random.default_rng(2)
    dense = rng.integers(1, 6, (7, 9)).astype(np.float64) * (rng.random((7, 9)) < 0.5)
    centred = np.where(dense > 0, dense - 3.0, 0.0)
    norms = np.linalg.norm(centred, axis=0)
    expected = np.zeros(dense.shape)
    for u in range(dense.shape[0]):
        for i in range(dense.shape[1]):
            for j in np.flatnonzero(dense[u]):
                if norms[i] > 0 and norms[j] > 0:
                    expected[u, i] += centred[u, j] * (centred[:, i] @ centred[:, j]) / (norms[i] * norms[j])
    np.testing.assert_allclose(scores_item_knn(sp.csr_matrix(dense)), expected, atol=1e-9)


def test_item_knn_beats_random_on_simulated_users():
    from recommend import evaluation

    _, sim = _small_simulation()
    quality = {}
    for name, scores in [
        ("item_knn", evaluation.scores_item_knn(sim.train)),
        ("random", evaluation.scores_random(sim.train)),
    ]:
        tops = evaluation.top_k(scores, sim.train, 10)
        quality[name] = evaluation.evaluate_ranking(
            tops,
            sim.train,
            sim.test,
            10,
            resamples=200,
            affinity=sim.affinity,
            scores=scores,
            random_test=sim.random_test,
        )
    for metric in ("hidden_liked_share@10", "random_exposure_ndcg@10"):
        assert quality["item_knn"][metric]["ci95"][0] > quality["random"][metric]["ci95"][1], metric


@pytest.mark.parametrize("method", ["random", "popularity", "item_knn", "als", "content_popularity"])
def test_every_method_ranks_the_catalog_without_training_items(method):
    from recommend import evaluation

    _, sim = _small_simulation()
    train = sim.train
    rng = np.random.default_rng(1)
    vectors, ids = rng.standard_normal((train.shape[1], 8)).astype(np.float32), np.arange(1000, 1000 + train.shape[1])
    scores = {
        "random": lambda: evaluation.scores_random(train),
        "popularity": lambda: evaluation.scores_popularity(train),
        "item_knn": lambda: evaluation.scores_item_knn(train),
        "als": lambda: evaluation.scores_als(train, evaluation.ALS_CONFIGS[0]),
        "content_popularity": lambda: evaluation.scores_content_popularity(train, vectors, ids),
    }[method]()
    assert scores.shape == train.shape and np.isfinite(scores).all()
    n = train.shape[1]
    full = evaluation.top_k(scores, train, n)
    for u in range(train.shape[0]):
        rated = set(train.indices[train.indptr[u] : train.indptr[u + 1]].tolist())
        ranked = full[u][: n - len(rated)]
        assert len(set(ranked.tolist())) == n - len(rated) and not rated & set(ranked.tolist())


def test_command_runs_simulated_users_and_generated_feed(embedded_tracks, tmp_path):
    from catalog.models import Rating, User
    from recommend.evaluation import ALS_CONFIGS
    from recommend.ranker import FEATURES

    for region, collection in [("irish", "oneill"), ("german", "essen"), ("", "bach")]:
        embedded_tracks(6, region=region, collection=collection)
    out = StringIO()
    call_command(
        "evaluate_recommender",
        "--k",
        "3",
        "--users",
        "0",
        "--sim-users",
        "25",
        "--ratings-per-user",
        "4,6",
        "--mixes",
        "0.7,0.2,0.1;0.2,0.7,0.1",
        "--gen-users",
        "3",
        "--gen-per-user",
        "2",
        "--bootstrap",
        "50",
        "--json",
        str(tmp_path / "e.json"),
        stdout=out,
    )
    result = json.loads((tmp_path / "e.json").read_text())["simulated_users"]
    assert len(result["regimes"]) == 2 * 2  # two mixes x two rating depths
    for regime in result["regimes"].values():
        assert set(regime["methods"]) == {
            "served",
            "popularity",
            "random",
            "item_knn",
            "als",
            "content_popularity",
            "oracle",
        }
        for m in regime["methods"].values():
            assert 0 <= m["recall@3"]["mean"] <= 1 and 0 <= m["ndcg@3"]["mean"] <= 1 and 0 < m["coverage"] <= 1
            assert 0 <= m["precision@3_true_top"]["mean"] <= 1 and "_per_user" not in m
        served = regime["methods"]["served"]
        for baseline in ("popularity", "item_knn", "als", "content_popularity"):
            assert set(served[f"versus_{baseline}"]) == {"precision@3_true_top", "random_exposure_ndcg@3"}
        assert set(served["ranker_weights"]) == set(FEATURES)
        assert 0 <= regime["cold_start"]["served"]["mean"] <= 1
        assert 0 <= regime["methods"]["random"]["random_exposure_ndcg@3"]["mean"] <= 1
        assert regime["methods"]["als"]["config"] in [dict(c) for c in ALS_CONFIGS]
    gen = result["generated_feed"]
    assert gen["users"] == 3 and set(gen["cosine_to_heldout_likes"]) == {"own", "other_user", "gap"}
    assert set(gen["centred_cosine_to_heldout_likes"]) == set(gen["hidden_affinity_of_nearest_catalog_track"]) - {
        "catalog_average"
    }
    assert "served minus content_popularity" in out.getvalue() and "generated feed" in out.getvalue()
    assert not Rating.objects.exists() and not User.objects.filter(username__startswith="evaluate-").exists()
