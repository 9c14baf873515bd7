"""The feed's ranker, without Django: a logistic regression over a few features of a (listener,
track) pair, stored as weights only (JSON: names, standardisation, coefficients, intercept).

Trained (recommend.model_services.ranker_train, manage.py train_recommender, a beat task, and the
offline evaluation on simulated logs) by `train_weights` with scikit-learn; served by `Ranker.score`
in plain numpy, so no pickle is ever loaded. With too little data the DEFAULT_WEIGHTS serve.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# Features of a (listener, candidate track) pair; see recommend.ranking.features.
FEATURES = (
    "content",  # cosine to the nearest of the listener's taste vectors, standardised per listener (0 without any)
    "collaborative",  # folded-in ALS user factors . the track's item factors, standardised per listener
    "damped_mean",  # the track's Bayesian-damped mean rating, minus 3
    "log_count",  # log(1 + ratings of the track)
    "recent",  # log(1 + likes of the track decayed with a week's half-life)
    "novelty",  # exp(-age in days / 30)
    "content_x_user",  # content * log(1 + the listener's ratings): content counts more once taste is known
    "collaborative_x_user",  # the same for the collaborative score
)
SCHEMA = 1

# Serve before anything was learned (a fresh install, or too few ratings to learn from): content
# first, then everyone's ratings, then popularity; raw feature units (no standardisation).
DEFAULT_WEIGHTS = {
    "content": 1.0,
    "collaborative": 0.5,
    "damped_mean": 1.0,
    "log_count": 0.3,
    "recent": 0.2,
    "novelty": 0.1,
    "content_x_user": 0.0,
    "collaborative_x_user": 0.0,
}
MIN_SPREAD = 1e-3  # standard deviation below which a feature is not learned from
MIN_EXAMPLES = 100  # labelled pairs needed before a learned model replaces the default
MIN_POSITIVES = 20


@dataclasses.dataclass
class Ranker:
    coef: np.ndarray  # [features], applied to standardised features
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    features: tuple[str, ...] = FEATURES
    version: int = 0
    metrics: dict = dataclasses.field(default_factory=dict)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Logits of the rows of x [n, features]."""
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.coef + self.intercept

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """[n, features] each feature's share of the logit (relative to an average pair): the reasons."""
        return (np.asarray(x, np.float64) - self.mean) / self.scale * self.coef

    def raw_weights(self) -> dict[str, float]:
        """The weight of each feature in its own units (coef / scale): what to read and report."""
        return {name: round(float(c / s), 4) for name, c, s in zip(self.features, self.coef, self.scale)}

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "features": list(self.features),
            "coef": [float(v) for v in self.coef],
            "intercept": float(self.intercept),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, data: dict, *, version: int = 0) -> Ranker:
        if data.get("schema") != SCHEMA or tuple(data.get("features", ())) != FEATURES:
            raise ValueError("ranker weights of another schema or feature set")
        return cls(
            coef=np.asarray(data["coef"], np.float64),
            intercept=float(data["intercept"]),
            mean=np.asarray(data["mean"], np.float64),
            scale=np.asarray(data["scale"], np.float64),
            version=version,
            metrics=dict(data.get("metrics", {})),
        )


def default_ranker() -> Ranker:
    return Ranker(
        coef=np.asarray([DEFAULT_WEIGHTS[f] for f in FEATURES], np.float64),
        intercept=0.0,
        mean=np.zeros(len(FEATURES)),
        scale=np.ones(len(FEATURES)),
        metrics={"default": True},
    )


C_GRID = (0.01, 0.1, 1.0, 10.0)


def train_weights(
    x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray, *, seed: int = 0
) -> Ranker:
    """Logistic regression on standardised features, its inverse regularisation C chosen by the
    validation log-loss (the validation rows are the later ones: a time-ordered split), then refitted
    on train + validation. The default ranker when there are too few examples or positives."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score

    y_train, y_valid = np.asarray(y_train, int), np.asarray(y_valid, int)
    enough = (
        len(y_train) + len(y_valid) >= MIN_EXAMPLES
        and y_train.sum() >= MIN_POSITIVES // 2
        and y_valid.sum() >= 1
        and len(set(y_train.tolist())) == 2
        and len(set(y_valid.tolist())) == 2
    )
    if not enough:
        ranker = default_ranker()
        ranker.metrics = {
            "default": True,
            "reason": "too few labelled pairs",
            "examples": int(len(y_train) + len(y_valid)),
        }
        return ranker
    x_all = np.vstack([x_train, x_valid]).astype(np.float64)
    mean, scale = x_all.mean(axis=0), x_all.std(axis=0)
    # A feature that hardly varies in the log (novelty when every track was added the same week)
    # is left out: standardised, its noise would get an arbitrary weight.
    varies = scale > MIN_SPREAD
    scale = np.where(varies, scale, 1.0)
    standard = lambda x: ((np.asarray(x, np.float64) - mean) / scale) * varies  # noqa: E731
    tried = []
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=1000, random_state=seed)
        model.fit(standard(x_train), y_train)
        p = model.predict_proba(standard(x_valid))[:, 1]
        tried.append(
            {
                "C": c,
                "valid_log_loss": round(float(log_loss(y_valid, p)), 5),
                "valid_auc": round(float(roc_auc_score(y_valid, p)), 4),
            }
        )
    best = min(tried, key=lambda t: t["valid_log_loss"])
    model = LogisticRegression(C=best["C"], max_iter=1000, random_state=seed)
    model.fit(standard(x_all), np.concatenate([y_train, y_valid]))
    return Ranker(
        coef=model.coef_[0].astype(np.float64) * varies,
        intercept=float(model.intercept_[0]),
        mean=mean,
        scale=scale,
        metrics={
            "default": False,
            "train_pairs": int(len(y_train)),
            "valid_pairs": int(len(y_valid)),
            "train_positive_share": round(float(y_train.mean()), 4),
            "C": best["C"],
            "valid_auc": best["valid_auc"],
            "valid_log_loss": best["valid_log_loss"],
            "tried": tried,
        },
    )


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def log1p(value: float) -> float:
    return math.log1p(max(float(value), 0.0))
