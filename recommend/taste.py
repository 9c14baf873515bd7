"""A user's taste in the serving latent space: one to three query vectors built from their ratings."""

from __future__ import annotations

import dataclasses

import numpy as np

from catalog.selectors import rating_scores_for_taste
from recommend.algorithms import silhouette, spherical_kmeans, unit
from recommend.index_readers import catalog_summary, serving_index
from recommend.selectors import embedding_matrix


@dataclasses.dataclass
class Anchor:
    track_id: int
    title: str
    score: int  # the user's rating
    vector: np.ndarray  # unit


@dataclasses.dataclass
class Taste:
    """One direction of a user's taste: a query vector and the rated tracks it came from."""

    vector: np.ndarray
    likes: list[Anchor]  # the liked tracks of this group (empty when only dislikes are known)
    dislikes: list[Anchor]


TASTE_MAX_GROUPS = 3
TASTE_SPLIT_SILHOUETTE = 0.25  # likes split into groups only when the groups are clearly apart
TASTE_MAX_RATINGS = 500


def taste_vectors(*, user, model_version=None, index=None) -> list[Taste]:
    """The user's taste in the serving version's latent space, from their ratings.

    Ratings of 4 and 5 pull with weight score-3, ratings of 1 and 2 push with weight 3-score (3 is
    neutral). Vectors are unit embeddings, mean-centred on the catalog mean m:
        taste = m + sum_i w_i (e_i - m) / sum_i |w_i|       (w negative for pushes)
    so with likes only the taste is their weighted mean, and a dislike moves it away from that
    track relative to the catalog as a whole (not away from everything the catalog shares).
    When the likes form clearly separate groups (spherical k-means, k = 2 or 3, chosen by cosine
    silhouette above TASTE_SPLIT_SILHOUETTE), each group gets its own taste vector (its likes plus
    all the pushes). Returns [] when nothing usable is rated: a cold start.
    """
    if model_version is None or index is None:
        model_version, index = serving_index()
    if model_version is None or index is None:
        return []
    ratings = rating_scores_for_taste(user=user, limit=TASTE_MAX_RATINGS)
    if not ratings:
        return []
    ids, vectors = embedding_matrix(model_version=model_version, track_ids=[r[0] for r in ratings])
    if not len(ids):
        return []
    return tastes_from_ratings(
        ratings=ratings, unit_vectors=dict(zip(ids.tolist(), unit(vectors))), mean=catalog_summary(index)["mean"]
    )


def tastes_from_ratings(*, ratings, unit_vectors: dict[int, np.ndarray], mean: np.ndarray) -> list[Taste]:
    """The pure core of taste_vectors (no database, no index): ratings are (track id, score, title)
    triples, unit_vectors the unit embeddings by track id, mean the catalog's mean unit vector.
    The offline evaluation (recommend.evaluation) calls this directly, so it measures the feed's rule.

    The result does not depend on the order of `ratings`: they are sorted by track id first (a
    rating saved again with the same score moves to the front of a newest-first list, and must not
    move the feed).
    """
    ordered = sorted(ratings, key=lambda r: (int(r[0]), int(r[1])))
    likes = [Anchor(t, title, s, unit_vectors[t]) for t, s, title in ordered if s >= 4 and t in unit_vectors]
    dislikes = [Anchor(t, title, s, unit_vectors[t]) for t, s, title in ordered if s <= 2 and t in unit_vectors]
    if not likes and not dislikes:
        return []
    push = sum(((3 - a.score) * (a.vector - mean) for a in dislikes), np.zeros_like(mean))
    push_weight = sum(3 - a.score for a in dislikes)

    def taste(group: list[Anchor]) -> Taste:
        pull = sum(((a.score - 3) * (a.vector - mean) for a in group), np.zeros_like(mean))
        weight = sum(a.score - 3 for a in group) + push_weight
        return Taste(
            vector=(mean + (pull - push) / max(weight, 1e-9)).astype(np.float32), likes=group, dislikes=dislikes
        )

    groups = [likes]
    if len(likes) >= 4:
        x = np.stack([a.vector for a in likes])
        best, best_labels = TASTE_SPLIT_SILHOUETTE, None
        for k in range(2, min(TASTE_MAX_GROUPS, len(likes) // 2) + 1):
            labels = spherical_kmeans(x, k)
            score = silhouette(x, labels)
            if score > best:
                best, best_labels = score, labels
        if best_labels is not None:
            groups = [[a for a, label in zip(likes, best_labels) if label == j] for j in range(best_labels.max() + 1)]
            groups.sort(key=lambda g: (-sum(a.score - 3 for a in g), g[0].track_id))
    return [taste(g) for g in groups]
