"""What everyone's ratings say, without Django: implicit ALS item factors, the fold-in of one
listener's ratings against them, and each track's damped popularity.

A `Signals` artifact is fitted from the ratings log (recommend.model_services on a beat task, or the
offline evaluation on simulated ratings), stored as a numpy .npz blob (no pickle) with a version,
and read by every web process (recommend.model_readers). A listener's own ratings are folded in at
request time (`fold_in`): the exact ALS user step against the fixed item factors, so a new rating
moves the next page at once, with no refit.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import scipy.sparse as sp

# Chosen on the evaluation's validation splits (recommend.evaluation, bench/results/recommender_eval.json):
# 64 factors, strong regularisation and a high confidence weight were best at ~10 and ~40 ratings a user.
ALS_FACTORS = 64
ALS_REGULARIZATION = 1.0
ALS_ALPHA = 10.0
ALS_ITERATIONS = 15
POPULARITY_PRIOR_RATINGS = 10.0  # the damped mean counts this many ratings of the global mean
RECENT_HALF_LIFE_DAYS = 7.0  # "popular this week": likes decay with this half-life
NEW_DAYS = 30.0  # novelty of a track decays with its age on this scale
LIKED = 4


def confidence(scores: np.ndarray) -> np.ndarray:
    """ALS confidence of a rating: score - 2 for 3..5 (1, 2, 3); dislikes (1, 2) carry none."""
    return np.maximum(np.asarray(scores, dtype=np.float32) - 2.0, 0.0)


@dataclasses.dataclass
class Signals:
    """Everyone's ratings, summarised per track, in the order of `track_ids`."""

    track_ids: np.ndarray  # int64 [n]
    item_factors: np.ndarray  # float32 [n, f]: ALS item factors (zeros when there was nothing to fit)
    damped_mean: np.ndarray  # float32 [n]: Bayesian-damped mean rating
    rating_count: np.ndarray  # float32 [n]
    recent_likes: np.ndarray  # float32 [n]: likes, each decayed with RECENT_HALF_LIFE_DAYS
    age_days: np.ndarray  # float32 [n]: age of the track when fitted (0 = unknown)
    regularization: float = ALS_REGULARIZATION
    alpha: float = ALS_ALPHA
    version: int = 0  # set by whoever stores it
    _position: dict | None = None
    _gram: np.ndarray | None = None

    @property
    def position(self) -> dict[int, int]:
        if self._position is None:
            self._position = {int(t): i for i, t in enumerate(self.track_ids.tolist())}
        return self._position

    @property
    def gram(self) -> np.ndarray:
        """Y^T Y of the item factors (float64), shared by every fold-in."""
        if self._gram is None:
            y = self.item_factors.astype(np.float64)
            self._gram = y.T @ y
        return self._gram

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            track_ids=self.track_ids,
            item_factors=self.item_factors,
            damped_mean=self.damped_mean,
            rating_count=self.rating_count,
            recent_likes=self.recent_likes,
            age_days=self.age_days,
            hyper=np.asarray([self.regularization, self.alpha], dtype=np.float64),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, version: int = 0) -> Signals:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
            hyper = z["hyper"]
            return cls(
                track_ids=z["track_ids"].astype(np.int64),
                item_factors=z["item_factors"].astype(np.float32),
                damped_mean=z["damped_mean"].astype(np.float32),
                rating_count=z["rating_count"].astype(np.float32),
                recent_likes=z["recent_likes"].astype(np.float32),
                age_days=z["age_days"].astype(np.float32),
                regularization=float(hyper[0]),
                alpha=float(hyper[1]),
                version=version,
            )


def als_item_factors(
    matrix: sp.csr_matrix,
    *,
    factors: int = ALS_FACTORS,
    regularization: float = ALS_REGULARIZATION,
    alpha: float = ALS_ALPHA,
    iterations: int = ALS_ITERATIONS,
    seed: int = 0,
    threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors) of implicit's ALS on a users x items confidence matrix."""
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    users, items = matrix.shape
    if matrix.nnz == 0:
        return np.zeros((users, factors), np.float32), np.zeros((items, factors), np.float32)
    with threadpool_limits(1, "blas"):  # implicit's own threads; BLAS threads on top only contend
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=seed,
            num_threads=threads,
            use_gpu=False,
        )
        model.fit(matrix.tocsr().astype(np.float32), show_progress=False)
    return np.asarray(model.user_factors, np.float32), np.asarray(model.item_factors, np.float32)


def popularity(
    items: np.ndarray, scores: np.ndarray, ages_days: np.ndarray | None, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(damped mean rating, rating count, recent likes) per item index.

    damped mean = (sum of scores + m * C) / (count + C), m the global mean, C = POPULARITY_PRIOR_RATINGS:
    a track rated 5 once does not outrank one rated 4.6 by two hundred listeners. `ages_days` is how
    long ago each rating was made (None: all now)."""
    scores = np.asarray(scores, dtype=np.float64)
    count = np.bincount(items, minlength=n_items).astype(np.float64)
    total = np.bincount(items, weights=scores, minlength=n_items)
    prior = float(scores.mean()) if len(scores) else 3.0
    damped = (total + prior * POPULARITY_PRIOR_RATINGS) / (count + POPULARITY_PRIOR_RATINGS)
    decay = np.ones(len(scores)) if ages_days is None else 0.5 ** (np.asarray(ages_days) / RECENT_HALF_LIFE_DAYS)
    recent = np.bincount(items, weights=decay * (scores >= LIKED), minlength=n_items)
    return damped.astype(np.float32), count.astype(np.float32), recent.astype(np.float32)


def signals_fit(
    *,
    track_ids: np.ndarray,
    track_ages_days: np.ndarray | None,
    rating_users: np.ndarray,
    rating_items: np.ndarray,
    rating_scores: np.ndarray,
    rating_ages_days: np.ndarray | None = None,
    factors: int = ALS_FACTORS,
    regularization: float = ALS_REGULARIZATION,
    alpha: float = ALS_ALPHA,
    iterations: int = ALS_ITERATIONS,
    seed: int = 0,
    threads: int = 0,
) -> Signals:
    """Fit the artifact from a ratings log: rating_users are any integer user keys, rating_items
    positions in track_ids."""
    track_ids = np.asarray(track_ids, dtype=np.int64)
    rating_items = np.asarray(rating_items, dtype=np.int64)
    _, user_rows = np.unique(np.asarray(rating_users), return_inverse=True)
    n_users = int(user_rows.max()) + 1 if len(user_rows) else 0
    conf = confidence(rating_scores)
    matrix = sp.csr_matrix((conf, (user_rows, rating_items)), shape=(n_users, len(track_ids)), dtype=np.float32)
    matrix.eliminate_zeros()
    _, item_factors = als_item_factors(
        matrix,
        factors=factors,
        regularization=regularization,
        alpha=alpha,
        iterations=iterations,
        seed=seed,
        threads=threads,
    )
    damped, count, recent = popularity(rating_items, rating_scores, rating_ages_days, len(track_ids))
    ages = np.zeros(len(track_ids), np.float32) if track_ages_days is None else np.asarray(track_ages_days, np.float32)
    return Signals(
        track_ids=track_ids,
        item_factors=item_factors,
        damped_mean=damped,
        rating_count=count,
        recent_likes=recent,
        age_days=ages,
        regularization=regularization,
        alpha=alpha,
    )


def fold_in(signals: Signals, track_ids, scores) -> np.ndarray | None:
    """A listener's ALS factors from their ratings, the item factors held fixed: the exact ALS user
    step (what implicit's recalculate_user solves), x = (Y^T C Y + lambda I)^-1 Y^T C p with
    confidence alpha * (score - 2). None when none of the rated tracks is in the model or every
    rating is a dislike (no confidence to fold in)."""
    rows, weights = [], []
    for track_id, score in zip(track_ids, scores):
        position = signals.position.get(int(track_id))
        weight = float(confidence(np.asarray([score]))[0])
        if position is not None and weight > 0:
            rows.append(position)
            weights.append(signals.alpha * weight)
    if not rows:
        return None
    y = signals.item_factors[rows].astype(np.float64)
    c = np.asarray(weights)
    a = signals.gram + signals.regularization * np.eye(y.shape[1]) + (y.T * (c - 1.0)) @ y
    b = (y.T * c).sum(axis=1)
    return np.linalg.solve(a, b).astype(np.float32)


def days_between(later: float, earlier: np.ndarray) -> np.ndarray:
    """Days from each of `earlier` (epoch seconds) to `later`, never negative."""
    return np.maximum((later - np.asarray(earlier, dtype=np.float64)) / 86400.0, 0.0)


def novelty(age_days: np.ndarray) -> np.ndarray:
    """1 for a track added today, decaying with NEW_DAYS (0 where the age is unknown, i.e. 0 and no ratings)."""
    return np.exp(-np.asarray(age_days, dtype=np.float64) / NEW_DAYS).astype(np.float32)
