"""Offline evaluation of the recommender on simulated users (issues 5 and 12).

Django-light: everything here takes numpy arrays (catalog labels, embeddings) and returns plain
dicts; manage.py evaluate_recommender reads the database and the model and calls these.

The simulation (there is no public rating log for this catalog, DESIGN.md section 6):

- Every catalog track has five REAL labels: group (region, else collection), meter (time
  signature), mode (major/minor from `key`), tempo bucket and note-density bucket (catalog tertiles
  of tempo_bpm and note_count / duration_seconds). An empty label matches nothing.
- A user's hidden taste is a few (label, value) pairs with Dirichlet weights summing to 1; the
  values are drawn from random catalog tracks, so common values are chosen more often. The
  content part of a track's affinity is the sum of the weights of the pairs it matches,
  standardised over the catalog for that user.
- Every track has an appeal (N(0, 1)) that all listeners share, and every (user, track) pair an
  idiosyncratic noise (N(0, 1)). True affinity = (c * content + a * appeal + n * noise) / |(c, a, n)|:
  the mix (SimConfig content_weight, appeal_weight, noise_weight) runs from content-dominated to
  appeal-dominated; the command reports a grid of mixes.
- Exposure: each track has a global visibility drawn log-normally (so some tracks are seen by
  many users whatever their appeal); a user rates n_u tracks (log-normal around the regime's mean)
  drawn without replacement with probability proportional to visibility * exp(exposure_bias *
  affinity): people mostly rate what they are shown and what they went looking for, and appealing
  tracks are shown more.
- Score = 1 + the number of THRESHOLDS that affinity + N(0, rating_noise) exceeds: 1..5.
  Liked = score >= 4. Each training rating gets a time, uniform over `days`: the served ranker
  learns from this log on a time-ordered split (recommend.ranking.learn), as it does in production.
- Split: 25 % of each user's ratings are held out as test; the relevant items are the held-out
  liked ones (users without any are not scored). Every method ranks the whole catalog minus the
  user's training ratings. ALS's configuration is chosen on a validation split of the training
  ratings (25 % of them), then refitted on all training ratings.

- Random exposure: each user also rates 100 tracks drawn uniformly from those they have not rated
  (the simulated counterpart of the randomly exposed test sets of Yahoo! R3 and Coat).

The served feed is recommend.ranking.rank_feed, the function GET /api/v1/feed/ calls (there is no
second implementation here), with the collaborative model and ranker that recommend.ranking.learn
fits on the simulated training log, over the serving index class (recommend.index.VectorIndex).
Its cold start is the same function with no ratings. Baselines: popularity (damped mean rating),
item-kNN, ALS (configuration chosen on validation) and content + popularity (a z-score sum of the
cosine to the user's taste vectors and the damped mean rating).

Metrics: precision@k against each user's true top-k (the top relevant_share of the tracks they have
not rated, by hidden affinity), Recall@k (held-out liked items in the top k / held-out liked items), NDCG@k with binary
relevance, random_exposure_ndcg@k (each method orders the user's randomly exposed tracks; graded
gains 2**score - 1: it measures taste where the held-out NDCG mostly measures exposure), hidden_liked_share@k (share of the top k with true affinity >= 0.6: what the user would
like, whether or not they were ever shown it; only a simulation can measure this), catalog coverage (share of the catalog in anyone's top k) and novelty (mean -log2 of
the training popularity (raters + 1) / (users + 1) of the recommended items). Means come with a
95 % percentile bootstrap interval over users.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.sparse as sp

from recommend.cold_start import catalog_groups
from recommend.collaborative import popularity
from recommend.index import IndexConfig, VectorIndex
from recommend.ranking import CatalogView, RatingLog, context, learn, rank_feed, reference_sample, score_tracks
from recommend.taste import tastes_from_ratings

FACETS = ("group", "meter", "mode", "tempo", "density")
THRESHOLDS = np.asarray([-0.5, 0.25, 0.9, 1.5])  # true affinity (+ rating noise) -> 1..5; liked above 0.9
LIKED = 4


# --- catalog labels -----------------------------------------------------------------------------------


def mode_of(key: str) -> str:
    key = (key or "").lower()
    return "minor" if "minor" in key else "major" if "major" in key else ""


def tertile_labels(values: np.ndarray, name: str) -> np.ndarray:
    """'low'/'mid'/'high' by catalog tertiles (fewer buckets when the values are tied); '' for NaN."""
    values = np.asarray(values, dtype=float)
    out = np.full(len(values), "", dtype=object)
    ok = np.isfinite(values)
    if not ok.any():
        return out
    edges = np.unique(np.quantile(values[ok], [1 / 3, 2 / 3]))
    buckets = np.searchsorted(edges, values[ok], side="right")
    names = ["low", "mid", "high"] if len(edges) == 2 else ["low", "high"] if len(edges) == 1 else ["all"]
    out[ok] = [f"{name}-{names[min(b, len(names) - 1)]}" for b in buckets]
    return out


def catalog_facets(
    *, region, collection, time_signature, key, tempo_bpm, note_count, duration_seconds
) -> dict[str, np.ndarray]:
    """The five label columns (object arrays of strings, '' = unknown) of the catalog tracks."""
    region, collection = list(region), list(collection)
    duration = np.maximum(np.asarray(duration_seconds, dtype=float), 1e-3)
    return {
        "group": np.asarray([r or c or "" for r, c in zip(region, collection)], dtype=object),
        "meter": np.asarray([m or "" for m in time_signature], dtype=object),
        "mode": np.asarray([mode_of(k) for k in key], dtype=object),
        "tempo": tertile_labels(np.asarray(tempo_bpm, dtype=float), "tempo"),
        "density": tertile_labels(np.asarray(note_count, dtype=float) / duration, "density"),
    }


# --- simulated users ------------------------------------------------------------------------------------


@dataclasses.dataclass
class SimConfig:
    users: int = 500
    ratings_per_user: float = 30.0  # mean of the log-normal number of ratings per user
    facets_per_user: int = 3
    # The mix of a listener's true affinity: their own taste over the content facets, the track's
    # appeal (one value per track that every listener shares), and idiosyncratic noise (per listener
    # and track). Each part has unit variance; the weights set how much each counts.
    content_weight: float = 0.45
    appeal_weight: float = 0.45
    noise_weight: float = 0.1
    rating_noise: float = 0.3
    exposure_bias: float = 1.5  # exposure odds multiply by e^(bias * affinity): appealing tracks are seen more
    visibility_sigma: float = 1.0
    test_share: float = 0.25
    random_exposure_items: int = 100  # per user, rated at random: the unbiased test set
    relevant_share: float = 0.02  # a listener's true top-k: this share of the catalog, by true affinity
    days: float = 90.0  # ratings are spread over this many days (the ranker learns on a time-ordered split)
    seed: int = 0

    @property
    def mix(self) -> str:
        return f"content {self.content_weight:g} / appeal {self.appeal_weight:g} / noise {self.noise_weight:g}"


@dataclasses.dataclass
class Simulation:
    tastes: list[list[tuple[str, str, float]]]  # per user: (facet, value, weight)
    affinity: np.ndarray  # [users, items] true affinity (content, appeal and noise mixed)
    train: sp.csr_matrix  # [users, items] scores 1..5 of the training ratings (0 = not rated)
    test: sp.csr_matrix  # [users, items] the held-out ratings
    random_test: sp.csr_matrix | None = None  # [users, items] ratings of uniformly random tracks
    appeal: np.ndarray | None = None  # [items] the shared part
    times: sp.csr_matrix | None = None  # [users, items] when each training rating was made (days, > 0)


def simulate(facets: dict[str, np.ndarray], config: SimConfig) -> Simulation:
    rng = np.random.default_rng(config.seed)
    n_items = len(next(iter(facets.values())))
    usable = [f for f in FACETS if f in facets and np.any(facets[f] != "")]
    visibility = rng.lognormal(0.0, config.visibility_sigma, n_items)
    appeal = rng.standard_normal(n_items).astype(np.float32)
    norm = math.sqrt(config.content_weight**2 + config.appeal_weight**2 + config.noise_weight**2) or 1.0
    tastes, affinity = [], np.zeros((config.users, n_items), dtype=np.float32)
    rows, cols, scores, is_test = [], [], [], []
    for u in range(config.users):
        chosen = rng.choice(usable, min(config.facets_per_user, len(usable)), replace=False)
        weights = rng.dirichlet(np.full(len(chosen), 2.0))
        taste, content = [], np.zeros(n_items, dtype=np.float32)
        for facet, weight in zip(chosen, weights):
            known = np.flatnonzero(facets[facet] != "")
            value = facets[facet][known[rng.integers(len(known))]]
            taste.append((str(facet), str(value), float(weight)))
            content += weight * (facets[facet] == value)
        spread = float(content.std())
        content = (content - content.mean()) / spread if spread > 1e-9 else content * 0.0
        noise = rng.standard_normal(n_items).astype(np.float32)
        affinity[u] = (
            config.content_weight * content + config.appeal_weight * appeal + config.noise_weight * noise
        ) / norm
        tastes.append(taste)
        n = int(np.clip(round(config.ratings_per_user * rng.lognormal(0.0, 0.5)), 5, n_items // 2))
        keys = np.log(visibility) + config.exposure_bias * affinity[u] + rng.gumbel(size=n_items)
        seen = np.argpartition(-keys, n)[:n]  # weighted sampling without replacement (Gumbel top-n)
        observed = affinity[u, seen] + rng.normal(0.0, config.rating_noise, n)
        score = 1 + np.searchsorted(THRESHOLDS, observed, side="right")
        held = np.zeros(n, dtype=bool)
        held[rng.permutation(n)[: max(1, round(config.test_share * n))]] = True
        rows += [u] * n
        cols += seen.tolist()
        scores += score.tolist()
        is_test += held.tolist()
    rows, cols, scores, is_test = map(np.asarray, (rows, cols, scores, is_test))
    shape = (config.users, n_items)
    train = sp.csr_matrix((scores[~is_test], (rows[~is_test], cols[~is_test])), shape=shape, dtype=np.float32)
    test = sp.csr_matrix((scores[is_test], (rows[is_test], cols[is_test])), shape=shape, dtype=np.float32)
    when = np.random.default_rng([config.seed, 2]).uniform(1e-3, config.days, int((~is_test).sum()))
    times = sp.csr_matrix((when, (rows[~is_test], cols[~is_test])), shape=shape, dtype=np.float64)
    return Simulation(
        tastes, affinity, train, test, random_exposure(affinity, train + test, config), appeal=appeal, times=times
    )


def random_exposure(affinity: np.ndarray, seen: sp.csr_matrix, config: SimConfig) -> sp.csr_matrix | None:
    """Each user also rates `random_exposure_items` tracks drawn uniformly from those they have not
    rated, with the same rating model: the simulated counterpart of the randomly exposed test sets
    of Yahoo! R3 and Coat. Ranking these per user measures taste, not who was shown what. Drawn
    from its own random stream, so the rest of the simulation does not change with it."""
    n = config.random_exposure_items
    if n <= 0:
        return None
    rng = np.random.default_rng([config.seed, 1])
    rows, cols, scores = [], [], []
    for u in range(affinity.shape[0]):
        unseen = np.setdiff1d(np.arange(affinity.shape[1]), seen.indices[seen.indptr[u] : seen.indptr[u + 1]])
        items = rng.choice(unseen, min(n, len(unseen)), replace=False)
        observed = affinity[u, items] + rng.normal(0.0, config.rating_noise, len(items))
        rows += [u] * len(items)
        cols += items.tolist()
        scores += (1 + np.searchsorted(THRESHOLDS, observed, side="right")).tolist()
    return sp.csr_matrix((scores, (rows, cols)), shape=affinity.shape, dtype=np.float32)


def split_off(ratings: sp.csr_matrix, share: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(kept, held out): `share` of each user's ratings (at least one when they have two) held out."""
    rng = np.random.default_rng(seed)
    coo = ratings.tocoo()
    held = np.zeros(coo.nnz, dtype=bool)
    for u in range(ratings.shape[0]):
        mine = np.flatnonzero(coo.row == u)
        if len(mine) >= 2:
            held[rng.choice(mine, max(1, round(share * len(mine))), replace=False)] = True
    make = lambda mask: sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=ratings.shape)  # noqa: E731
    return make(~held), make(held)


# --- metrics --------------------------------------------------------------------------------------------


def top_k(scores: np.ndarray, exclude: sp.csr_matrix, k: int) -> np.ndarray:
    """[users, k] item indices, best first, never an item in the user's row of `exclude`."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    coo = exclude.tocoo()
    scores[coo.row, coo.col] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def recall_ndcg(ranked: np.ndarray, relevant: set[int], k: int) -> tuple[float, float]:
    """Recall@k = hits / |relevant|; NDCG@k with binary relevance (ideal: min(k, |relevant|) hits)."""
    if not relevant:
        return math.nan, math.nan
    top = list(ranked[:k])
    gains = [1.0 if item in relevant else 0.0 for item in top]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return sum(gains) / len(relevant), dcg / idcg


def random_exposure_ndcg(scores: np.ndarray, random_test: sp.csr_matrix, k: int) -> np.ndarray:
    """Per user: NDCG@k of the method's order of that user's randomly exposed tracks, with graded
    gains 2**score - 1 (a 5 counts far more than a 3). NaN for a user whose tracks all scored 1."""
    out = np.full(random_test.shape[0], np.nan)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for u in range(random_test.shape[0]):
        row = slice(random_test.indptr[u], random_test.indptr[u + 1])
        items, gains = random_test.indices[row], 2.0 ** random_test.data[row] - 1.0
        ideal = np.sort(gains)[::-1][:k]
        if len(items) == 0 or ideal[0] <= 1.0:
            continue
        order = np.argsort(-np.asarray(scores[u])[items], kind="stable")[:k]
        out[u] = float((gains[order] * discounts[: len(order)]).sum() / (ideal * discounts[: len(ideal)]).sum())
    return out


def bootstrap_ci(values: np.ndarray, *, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def liked_sets(ratings: sp.csr_matrix) -> list[set[int]]:
    return [
        set(
            ratings.indices[ratings.indptr[u] : ratings.indptr[u + 1]][
                ratings.data[ratings.indptr[u] : ratings.indptr[u + 1]] >= LIKED
            ].tolist()
        )
        for u in range(ratings.shape[0])
    ]


def evaluate_ranking(
    tops: np.ndarray,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    k: int,
    *,
    resamples: int = 1000,
    seed: int = 0,
    affinity: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    random_test: sp.csr_matrix | None = None,
) -> dict:
    """Recall@k, NDCG@k, coverage and novelty of the top-k lists [users, >=k] against held-out likes.

    With the simulation's true affinity [users, items], also hidden_liked_share@k: the share of the
    top k the user would like (affinity >= 0.6, i.e. an expected score of 4 or more before rating
    noise). Unlike recall it does not depend on which tracks the user happened to be shown.
    With the method's scores and the randomly exposed ratings, also random_exposure_ndcg@k."""
    relevant = liked_sets(test)
    users = [u for u in range(len(relevant)) if relevant[u]]
    recall, ndcg = np.full(len(users), np.nan), np.full(len(users), np.nan)
    for i, u in enumerate(users):
        recall[i], ndcg[i] = recall_ndcg(tops[u], relevant[u], k)
    raters = np.asarray((train > 0).sum(axis=0)).ravel()
    popularity = (raters + 1.0) / (train.shape[0] + 1.0)
    novelty = -np.log2(popularity[tops[users, :k]]).mean(axis=1) if users else np.zeros(0)
    coverage = len(np.unique(tops[users, :k])) / train.shape[1] if users else 0.0

    def summary(values):
        low, high = bootstrap_ci(values, resamples=resamples, seed=seed)
        return {
            "mean": round(float(np.nanmean(values)), 4) if len(values) else math.nan,
            "ci95": [round(low, 4), round(high, 4)],
        }

    result = {
        "users": len(users),
        f"recall@{k}": summary(recall),
        f"ndcg@{k}": summary(ndcg),
        "coverage": round(float(coverage), 4),
        "novelty": summary(novelty),
    }
    if affinity is not None and users:
        liked = (np.take_along_axis(affinity[users], tops[users, :k], axis=1) >= THRESHOLDS[LIKED - 2]).mean(axis=1)
        result[f"hidden_liked_share@{k}"] = summary(liked)
        result["_per_user"] = {"users": np.asarray(users), f"ndcg@{k}": ndcg, f"hidden_liked_share@{k}": liked}
    if scores is not None and random_test is not None:
        unbiased = random_exposure_ndcg(scores, random_test, k)  # every user, not only those with held-out likes
        result[f"random_exposure_ndcg@{k}"] = summary(unbiased)
        if "_per_user" in result:  # paired differences on the same users as the other metrics
            result["_per_user"][f"random_exposure_ndcg@{k}"] = unbiased[users]
    return result


def paired_differences(methods: dict[str, dict], reference: str, *, resamples: int = 1000, seed: int = 0) -> None:
    """Add to every other method its per-user paired difference from `reference` (mean and 95 %
    bootstrap interval) on each per-user metric, then drop the per-user arrays."""
    base = methods[reference].get("_per_user")
    for name, result in methods.items():
        mine = result.get("_per_user")
        if name != reference and base is not None and mine is not None:
            diffs = {}
            for metric in (m for m in mine if m != "users"):
                delta = mine[metric] - base[metric]
                low, high = bootstrap_ci(delta, resamples=resamples, seed=seed)
                diffs[metric] = {"mean": round(float(np.nanmean(delta)), 4), "ci95": [round(low, 4), round(high, 4)]}
            result[f"minus_{reference}"] = diffs
    for result in methods.values():
        result.pop("_per_user", None)


# --- recommenders: each returns scores [users, items]; higher = better -----------------------------------


def scores_random(train: sp.csr_matrix, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(train.shape)


def damped_popularity(train: sp.csr_matrix) -> np.ndarray:
    """[items] the served model's popularity (recommend.collaborative.popularity): damped mean rating,
    ties broken by the number of ratings."""
    coo = train.tocoo()
    damped, count, _ = popularity(coo.col.astype(np.int64), coo.data, None, train.shape[1])
    return damped.astype(np.float64) + 1e-6 * count / (count.max() + 1.0)


def scores_popularity(train: sp.csr_matrix) -> np.ndarray:
    """Popularity as a baseline: every listener gets the damped mean rating order."""
    return np.broadcast_to(damped_popularity(train), train.shape)


def scores_item_knn(train: sp.csr_matrix) -> np.ndarray:
    """Item-based CF: score(u, i) = sum_j r_uj cos(i, j), ratings centred on 3 (a dislike counts
    against its neighbours), cosine between the centred item rating columns, all neighbours kept."""
    centred = train.copy().astype(np.float64)
    centred.data = centred.data - 3.0
    norms = np.sqrt(np.asarray(centred.multiply(centred).sum(axis=0)).ravel())
    normalized = centred @ sp.diags(1.0 / np.maximum(norms, 1e-12))
    # sum_j r_uj sum_v n_vj n_vi = ((R N^T) N)[u, i]: a users x users product, never items x items
    return np.asarray(((centred @ normalized.T) @ normalized).todense())


def implicit_matrix(train: sp.csr_matrix) -> sp.csr_matrix:
    """ALS input: confidence score - 2 for ratings 3..5 (1, 2, 3); dislikes (1, 2) are dropped."""
    m = train.copy().astype(np.float32)
    m.data = np.maximum(m.data - 2.0, 0.0)
    m.eliminate_zeros()
    return m.tocsr()


ALS_CONFIGS = (
    {"factors": 16, "regularization": 0.05, "iterations": 15, "alpha": 1.0},
    {"factors": 32, "regularization": 0.1, "iterations": 15, "alpha": 5.0},
    {"factors": 64, "regularization": 0.1, "iterations": 15, "alpha": 1.0},
    {"factors": 64, "regularization": 1.0, "iterations": 15, "alpha": 10.0},
)


def scores_als(train: sp.csr_matrix, config: dict, seed: int = 0) -> np.ndarray:
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=config["factors"],
            regularization=config["regularization"],
            iterations=config["iterations"],
            alpha=config["alpha"],
            random_state=seed,
            num_threads=1,
            use_gpu=False,
        )
        model.fit(implicit_matrix(train), show_progress=False)
        users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return users @ items.T


def als_select(train: sp.csr_matrix, k: int, seed: int = 0, configs=ALS_CONFIGS) -> tuple[dict, list[dict]]:
    """The ALS config with the best NDCG@k on a validation split of the training ratings."""
    fit, valid = split_off(train, 0.25, seed + 1)
    tried = []
    for config in configs:
        tops = top_k(scores_als(fit, config, seed), fit, k)
        relevant = liked_sets(valid)
        values = [recall_ndcg(tops[u], relevant[u], k)[1] for u in range(len(relevant)) if relevant[u]]
        tried.append({**config, f"validation_ndcg@{k}": round(float(np.mean(values)) if values else 0.0, 4)})
    best = max(range(len(tried)), key=lambda i: tried[i][f"validation_ndcg@{k}"])
    return dict(configs[best]), tried


def unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=-1, keepdims=True), 1e-12)


def user_ratings(train: sp.csr_matrix, u: int, ids: np.ndarray) -> list[tuple[int, int, str]]:
    """User u's training ratings as the feed reads them: (track id, score, title)."""
    row = slice(train.indptr[u], train.indptr[u + 1])
    return [(int(ids[i]), int(s), f"track {int(ids[i])}") for i, s in zip(train.indices[row], train.data[row])]


def user_tastes(train: sp.csr_matrix, u: int, unit_vectors: np.ndarray, mean: np.ndarray, ids: np.ndarray):
    """The feed's taste vectors of user u from their training ratings (recommend.taste core)."""
    row = slice(train.indptr[u], train.indptr[u + 1])
    items = train.indices[row]
    return tastes_from_ratings(
        ratings=user_ratings(train, u, ids), unit_vectors={int(ids[i]): unit_vectors[i] for i in items}, mean=mean
    )


def zscore(x: np.ndarray) -> np.ndarray:
    spread = float(x.std())
    return (x - x.mean()) / spread if spread > 1e-12 else x * 0.0


def scores_content_popularity(train: sp.csr_matrix, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Baseline: the embeddings plus popularity, a plain z-score sum of the cosine to the user's
    nearest taste vector and the damped mean rating (popularity alone without a taste)."""
    catalog = unit(vectors.astype(np.float32))
    mean = catalog.mean(axis=0)
    pop = zscore(damped_popularity(train))
    scores = np.empty(train.shape, dtype=np.float32)
    for u in range(train.shape[0]):
        tastes = user_tastes(train, u, catalog, mean, ids)
        content = (catalog @ unit(np.stack([t.vector for t in tastes])).T).max(axis=1) if tastes else None
        scores[u] = pop + (zscore(content) if content is not None else 0.0)
    return scores


# --- the served feed, called as the API calls it ----------------------------------------------------------


def served_catalog(ids: np.ndarray, vectors: np.ndarray, groups: dict[int, str] | None = None) -> CatalogView:
    """The catalog as recommend.ranking sees it, over the serving index class (recommend.index)."""
    catalog = unit(vectors.astype(np.float32))
    index = VectorIndex.build(ids, catalog, IndexConfig(dim=catalog.shape[1], use_gpu=False))
    position = {int(t): i for i, t in enumerate(ids.tolist())}
    explored: list = []

    def search(queries, k, exclude):
        result = index.search(queries, k, exclude_ids=exclude)
        return result.ids, result.scores

    def explore():
        if not explored:
            explored.append(catalog_groups(ids, catalog, groups or {}))
        return explored[0]

    return CatalogView(
        mean=catalog.mean(axis=0),
        search=search,
        vectors_of=lambda wanted: {int(t): catalog[position[int(t)]] for t in wanted if int(t) in position},
        servable=lambda wanted: {int(t) for t in wanted if int(t) in position},
        explore=explore,
        reference=catalog[reference_sample(len(catalog))],
    )


def rating_log(train: sp.csr_matrix, times: sp.csr_matrix, ids: np.ndarray) -> RatingLog:
    coo, when = train.tocoo(), times.tocoo()
    assert (coo.row == when.row).all() and (coo.col == when.col).all()
    return RatingLog(
        users=coo.row.astype(np.int64),
        track_ids=ids[coo.col].astype(np.int64),
        scores=coo.data.astype(np.int64),
        times=when.data.astype(np.float64) * 86400.0,
    )


def served_rankings(
    sim: Simulation, ids: np.ndarray, catalog: CatalogView, signals, ranker, k: int, progress=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tops [users, k] of the served feed, the ranker's scores [users, items] of each user's randomly
    exposed tracks (-inf elsewhere), the cold-start feed [k]), all from recommend.ranking: rank_feed
    is the function feeds.feed_recommended calls."""
    train, position = sim.train, {int(t): i for i, t in enumerate(ids.tolist())}
    fallback = np.argsort(-damped_popularity(train), kind="stable")
    tops = np.empty((train.shape[0], k), dtype=np.int64)
    scores = np.full(train.shape, -np.inf, dtype=np.float32)
    for u in range(train.shape[0]):
        ratings = user_ratings(train, u, ids)
        feed = rank_feed(ratings=ratings, catalog=catalog, signals=signals, ranker=ranker, size=k)
        row = [position[it.track_id] for it in feed][:k]
        rated = set(train.indices[train.indptr[u] : train.indptr[u + 1]].tolist())
        row += [int(i) for i in fallback if int(i) not in rated and int(i) not in row][: k - len(row)]
        tops[u] = row
        if sim.random_test is not None:
            items = sim.random_test.indices[sim.random_test.indptr[u] : sim.random_test.indptr[u + 1]]
            got, _, _, logits = score_tracks(
                context(ratings, catalog, signals), catalog, signals, ranker, ids[items].tolist()
            )
            scores[u, [position[t] for t in got]] = logits
        if progress and u % 200 == 0:
            progress(f"served feed: user {u}")
    cold = [
        position[it.track_id] for it in rank_feed(ratings=[], catalog=catalog, signals=signals, ranker=ranker, size=k)
    ]
    cold += [int(i) for i in fallback if int(i) not in cold][: k - len(cold)]
    return tops, scores, np.asarray(cold[:k])


def true_top(affinity: np.ndarray, exclude: sp.csr_matrix | None, share: float) -> list[set[int]]:
    """Each user's true top `share` of the catalog by hidden affinity, among the tracks not in `exclude`."""
    n = affinity.shape[1]
    size = max(1, int(round(share * n)))
    out = []
    for u in range(affinity.shape[0]):
        row = affinity[u].astype(np.float64, copy=True)
        if exclude is not None:
            row[exclude.indices[exclude.indptr[u] : exclude.indptr[u + 1]]] = -np.inf
        out.append(set(np.argpartition(-row, size - 1)[:size].tolist()))
    return out


def precision_true_top(tops: np.ndarray, relevant: list[set[int]], k: int) -> np.ndarray:
    """Per user: share of the top k in the user's true top set."""
    return np.asarray([len(set(tops[u, :k].tolist()) & relevant[u]) / k for u in range(len(relevant))])


def versus(served: dict, baseline: dict, *, resamples: int, seed: int) -> dict:
    """Served minus baseline, paired by user, on each per-user metric: mean, 95 % bootstrap interval,
    relative gain (mean difference / baseline mean) and whether it meets the target (>= 10 %
    relative, interval above 0)."""
    out = {}
    for metric, mine in served.items():
        theirs = baseline.get(metric)
        if theirs is None:
            continue
        delta = mine - theirs
        low, high = bootstrap_ci(delta, resamples=resamples, seed=seed)
        base = float(np.nanmean(theirs))
        relative = float(np.nanmean(delta)) / base if base > 0 else math.nan
        out[metric] = {
            "mean": round(float(np.nanmean(delta)), 4),
            "ci95": [round(low, 4), round(high, 4)],
            "relative": round(relative, 4),
            "meets_target": bool(relative >= 0.10 and low > 0),
        }
    return out


# --- generated feed -------------------------------------------------------------------------------------


def nearest_affinity(generated: np.ndarray, catalog_unit: np.ndarray, affinity_row: np.ndarray) -> float:
    """Mean true affinity (to one user) of the nearest catalog track of each generated vector."""
    nearest = np.argmax(unit(generated) @ catalog_unit.T, axis=1)
    return float(affinity_row[nearest].mean())


def mean_cosine(generated: np.ndarray, targets: np.ndarray) -> float:
    return float((unit(generated) @ unit(targets).T).mean())


BASELINES = ("popularity", "item_knn", "als", "content_popularity")


def run_simulation(
    facets: dict[str, np.ndarray],
    vectors: np.ndarray,
    ids: np.ndarray,
    config: SimConfig,
    *,
    k: int = 10,
    resamples: int = 1000,
    progress=None,
) -> tuple[dict, Simulation]:
    """Simulate users, rank with the served feed and every baseline, score the rankings.
    `progress(name)` is called per method."""
    step = progress or (lambda name: None)
    sim = simulate(facets, config)
    train, test = sim.train, sim.test
    liked_train = np.asarray((train >= LIKED).sum(axis=1)).ravel()
    relevant = true_top(sim.affinity, train, config.relevant_share)
    relevant_cold = true_top(sim.affinity, None, config.relevant_share)
    methods: dict[str, dict] = {}
    per_user: dict[str, dict] = {}

    def score(name: str, scores: np.ndarray | None, tops: np.ndarray | None = None, **extra) -> None:
        step(name)
        tops = top_k(scores, train, k) if tops is None else tops
        result = evaluate_ranking(
            tops,
            train,
            test,
            k,
            resamples=resamples,
            seed=config.seed,
            affinity=sim.affinity,
            scores=scores,
            random_test=sim.random_test,
        )
        result.pop("_per_user", None)
        precision = precision_true_top(tops, relevant, k)
        low, high = bootstrap_ci(precision, resamples=resamples, seed=config.seed)
        result[f"precision@{k}_true_top"] = {
            "mean": round(float(precision.mean()), 4),
            "ci95": [round(low, 4), round(high, 4)],
        }
        per_user[name] = {f"precision@{k}_true_top": precision}
        if scores is not None and sim.random_test is not None:
            per_user[name][f"random_exposure_ndcg@{k}"] = random_exposure_ndcg(scores, sim.random_test, k)
        methods[name] = {**result, **extra}

    step("served: learning the collaborative model and the ranker (recommend.ranking.learn)")
    catalog = served_catalog(ids, vectors, {int(t): str(g) for t, g in zip(ids.tolist(), facets["group"].tolist())})
    log = rating_log(train, sim.times, ids)
    signals, ranker = learn(log, catalog, ids, now=config.days * 86400.0, seed=config.seed)
    tops, served_scores, cold = served_rankings(sim, ids, catalog, signals, ranker, k, step)
    score(
        "served",
        served_scores,
        tops,
        note="recommend.ranking.rank_feed, the function GET /api/v1/feed/ calls; random-exposure order by its ranker",
        ranker_weights=ranker.raw_weights(),
        ranker_metrics={key: v for key, v in ranker.metrics.items() if key != "tried"},
    )
    del served_scores
    pop = damped_popularity(train)
    score("popularity", np.broadcast_to(pop, train.shape))
    score("random", scores_random(train, config.seed))
    score("item_knn", scores_item_knn(train))
    step("als (choosing a config on validation)")
    best, tried = als_select(train, k, config.seed)
    score("als", scores_als(train, best, config.seed), config=best, configs_tried=tried)
    score("content_popularity", scores_content_popularity(train, vectors, ids))
    score("oracle", sim.affinity, note="the ceiling: ranks by the hidden true affinity (not a recommender)")
    for name in BASELINES:
        methods["served"][f"versus_{name}"] = versus(
            per_user["served"], per_user[name], resamples=resamples, seed=config.seed
        )
    # Cold start: nobody's own ratings; the served cold-start page against popularity's top k.
    pop_top = np.argsort(-pop, kind="stable")[:k]
    cold_served = precision_true_top(np.broadcast_to(cold, (train.shape[0], k)), relevant_cold, k)
    cold_pop = precision_true_top(np.broadcast_to(pop_top, (train.shape[0], k)), relevant_cold, k)
    cold_key = f"precision@{k}_true_top"
    cold_result = {
        "served": {
            "mean": round(float(cold_served.mean()), 4),
            "ci95": [round(v, 4) for v in bootstrap_ci(cold_served, resamples=resamples, seed=config.seed)],
        },
        "popularity": {
            "mean": round(float(cold_pop.mean()), 4),
            "ci95": [round(v, 4) for v in bootstrap_ci(cold_pop, resamples=resamples, seed=config.seed)],
        },
        "served_minus_popularity": versus(
            {cold_key: cold_served}, {cold_key: cold_pop}, resamples=resamples, seed=config.seed
        )[cold_key],
    }
    data = {
        "config": dataclasses.asdict(config),
        "mix": config.mix,
        "users": config.users,
        "items": train.shape[1],
        "train_ratings": int(train.nnz),
        "test_ratings": int(test.nnz),
        "train_ratings_per_user": round(train.nnz / config.users, 1),
        "train_likes_per_user": round(float(liked_train.mean()), 1),
        "liked_share_of_ratings": round(float((train.data >= LIKED).mean()), 3),
        "density": round(train.nnz / (train.shape[0] * train.shape[1]), 6),
        "score_histogram": {str(s): int((train.data == s).sum()) for s in range(1, 6)},
        "example_tastes": [[f"{f}={v} ({w:.2f})" for f, v, w in taste] for taste in sim.tastes[:5]],
        "methods": methods,
        "cold_start": cold_result,
    }
    return data, sim


def generated_feed_quality(
    vae,
    sim: Simulation,
    vectors: np.ndarray,
    ids: np.ndarray,
    *,
    users: int,
    per_user: int,
    seed: int = 0,
    temperature: float = 0.5,
    spread: float = 0.3,
    resamples: int = 1000,
) -> dict:
    """Part c: melodies generated near simulated users' tastes, the way the generated feed's top-up
    makes them (vae.similar around the best-liked track of each taste group, spread 0.3, then
    decode at temperature 0.5), re-encoded and compared with the same user's HELD-OUT liked tracks
    and hidden taste, against the melodies made for another, randomly paired, user.

    cosine: mean cosine between the re-encoded melodies and the user's held-out liked tracks;
    centred_cosine: the same after subtracting the catalog's mean unit vector from both sides (the
    embeddings share a large common direction, so plain cosines between any two tunes are high).
    affinity: the user's true (hidden) affinity of each melody's nearest catalog track.
    """
    import torch

    rng = np.random.default_rng(seed + 7)
    catalog = unit(vectors.astype(np.float32))
    mean = catalog.mean(axis=0)
    position = {int(t): i for i, t in enumerate(ids.tolist())}
    held_likes = liked_sets(sim.test)
    candidates = []
    for u in range(sim.train.shape[0]):
        if held_likes[u]:
            tastes = [t for t in user_tastes(sim.train, u, catalog, mean, ids) if t.likes]
            if tastes:
                candidates.append((u, tastes))
    if len(candidates) < 2:
        return {"users": 0, "note": "fewer than two simulated users with likes in both splits"}
    picked = [candidates[i] for i in sorted(rng.choice(len(candidates), min(users, len(candidates)), replace=False))]
    anchors, owners = [], []
    for u, tastes in picked:  # one anchor per taste group, melodies shared round-robin
        best = [max(t.likes, key=lambda a: a.score).track_id for t in tastes]
        for j in range(per_user):
            anchors.append(vectors[position[best[j % len(best)]]])
            owners.append(u)
    z = torch.cat(
        [vae.similar(torch.as_tensor(a), 1, spread=spread, seed=seed * 100003 + n) for n, a in enumerate(anchors)]
    )
    tokens = vae.decode(z, temperature=temperature, seed=seed, batch_size=256)
    with torch.no_grad():
        mu, _ = vae.encode(list(tokens))
    generated = mu.float().cpu().numpy()
    owners = np.asarray(owners)
    users_in = [u for u, _ in picked]
    others = np.roll(np.asarray(users_in), 1 + int(rng.integers(max(1, len(users_in) - 1))))  # no fixed point
    rows = {
        "cosine_own": [],
        "cosine_other": [],
        "centred_own": [],
        "centred_other": [],
        "affinity_own": [],
        "affinity_other": [],
        "affinity_catalog": [],
    }
    for u, other in zip(users_in, others):
        mine, theirs = generated[owners == u], generated[owners == other]
        targets = catalog[sorted(held_likes[u])]
        rows["cosine_own"].append(mean_cosine(mine, targets))
        rows["cosine_other"].append(mean_cosine(theirs, targets))
        rows["centred_own"].append(mean_cosine(unit(mine) - mean, targets - mean))
        rows["centred_other"].append(mean_cosine(unit(theirs) - mean, targets - mean))
        rows["affinity_own"].append(nearest_affinity(mine, catalog, sim.affinity[u]))
        rows["affinity_other"].append(nearest_affinity(theirs, catalog, sim.affinity[u]))
        rows["affinity_catalog"].append(float(sim.affinity[u].mean()))
    arrays = {name: np.asarray(values) for name, values in rows.items()}

    def summary(values):
        low, high = bootstrap_ci(values, resamples=resamples, seed=seed)
        return {"mean": round(float(values.mean()), 4), "ci95": [round(low, 4), round(high, 4)]}

    silent = int((np.asarray(tokens) == np.asarray(tokens)[:, :1]).all(axis=1).sum())
    return {
        "users": len(users_in),
        "melodies_per_user": per_user,
        "temperature": temperature,
        "spread": spread,
        "constant_melodies": silent,
        "cosine_to_heldout_likes": {
            "own": summary(arrays["cosine_own"]),
            "other_user": summary(arrays["cosine_other"]),
            "gap": summary(arrays["cosine_own"] - arrays["cosine_other"]),
        },
        "centred_cosine_to_heldout_likes": {
            "own": summary(arrays["centred_own"]),
            "other_user": summary(arrays["centred_other"]),
            "gap": summary(arrays["centred_own"] - arrays["centred_other"]),
        },
        "hidden_affinity_of_nearest_catalog_track": {
            "own": summary(arrays["affinity_own"]),
            "other_user": summary(arrays["affinity_other"]),
            "gap": summary(arrays["affinity_own"] - arrays["affinity_other"]),
            "catalog_average": summary(arrays["affinity_catalog"]),
        },
    }
