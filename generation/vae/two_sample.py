"""Classifier two-sample test: can a gradient-boosted classifier tell generated tunes from real ones?

Each tune becomes a vector of hand-made melodic, rhythmic and structural features (`features`);
a HistGradientBoostingClassifier is cross-validated with folds grouped by tune (windows of one real
tune, or one generated tune, never sit on both sides of a fold), and the out-of-fold ROC AUC is
reported with a bootstrap interval over groups. 0.5: indistinguishable; 1.0: told apart perfectly.
Run real against real (two disjoint sets of tunes) as the control: it should come out near 0.5.
"""

from __future__ import annotations

import numpy as np

from .attributes import notes_of
from .metrics import scale_consistency
from .structure import longest_silence, repeat_share

_DUR_EDGES = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 10_000])
_INT_EDGES = np.array([-100, -8, -5, -3, -1, 0, 1, 3, 5, 8, 100])  # bins of the signed interval


def features(tokens: np.ndarray, steps: int) -> np.ndarray:
    """A fixed-length feature vector; `steps` is the tune's chunk length (bar structure)."""
    t = np.asarray(tokens, dtype=np.int64)
    notes = notes_of(t)
    T = max(1, len(t))
    if len(notes) < 2:
        return np.zeros(N_FEATURES)
    on = np.array([n[0] for n in notes])
    du = np.array([n[1] for n in notes])
    pi = np.array([n[2] for n in notes])
    iv = np.diff(pi)
    dur_h = np.histogram(du, _DUR_EDGES)[0] / len(du)
    int_h = np.histogram(iv, _INT_EDGES)[0] / len(iv)
    beat_pos = np.bincount(on % 4, minlength=4) / len(on)  # onsets on 16th positions within a beat
    chunk_pos = on % steps
    sounding = du.sum() / T
    pcs = np.bincount(pi % 12, minlength=12).astype(float)
    tonic = int(np.argmax(pcs))
    contour_changes = np.mean(np.sign(iv[1:]) != np.sign(iv[:-1])) if len(iv) > 1 else 0.0
    chunks = [tuple(t[s : s + steps]) for s in range(0, T - steps + 1, steps)]
    vec = [
        len(notes) / T * 16,  # notes per 16 steps
        pi.mean(),
        pi.std(),
        pi.max() - pi.min(),
        np.abs(iv).mean(),
        np.abs(iv).std(),
        np.mean(iv == 0),
        np.mean(np.abs(iv) > 7),
        du.mean(),
        du.std(),
        du.max(),
        sounding,
        longest_silence(t) / T,
        scale_consistency(t),
        contour_changes,
        np.mean(chunk_pos == 0),  # onsets on chunk starts
        (pi[-1] - tonic) % 12 == 0,  # ends on the most used pitch class
        du[-1],
        repeat_share(t, steps),
        repeat_share(t, steps, transposed=True),
        len(set(chunks)) / max(1, len(chunks)),
        np.corrcoef(pi[:-1], pi[1:])[0, 1] if len(pi) > 2 and pi.std() > 0 else 0.0,
    ]
    return np.nan_to_num(np.concatenate([np.asarray(vec, dtype=float), dur_h, int_h, beat_pos]))


N_FEATURES = 22 + 10 + 10 + 4


def feature_matrix(tunes: list[np.ndarray], steps: list[int]) -> np.ndarray:
    return np.stack([features(t, s) for t, s in zip(tunes, steps)]) if tunes else np.zeros((0, N_FEATURES))


def two_sample_auc(
    real: np.ndarray,
    fake: np.ndarray,
    real_groups: np.ndarray,
    fake_groups: np.ndarray | None = None,
    *,
    folds: int = 5,
    bootstrap: int = 500,
    seed: int = 0,
) -> dict[str, float]:
    """Out-of-fold AUC of real (label 0) vs fake (label 1) feature matrices, CV grouped by tune."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    X = np.concatenate([real, fake])
    y = np.concatenate([np.zeros(len(real)), np.ones(len(fake))])
    fake_groups = np.arange(len(fake)) if fake_groups is None else np.asarray(fake_groups)
    # distinct group ids across the two sides
    _, rg = np.unique(np.asarray(real_groups).astype(str), return_inverse=True)
    _, fg = np.unique(fake_groups.astype(str), return_inverse=True)
    groups = np.concatenate([rg, fg + rg.max() + 1])
    oof = np.zeros(len(y))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for tr, te in cv.split(X, y, groups):
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=seed)
        clf.fit(X[tr], y[tr])
        oof[te] = clf.predict_proba(X[te])[:, 1]
    auc = float(roc_auc_score(y, oof))
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in uniq}
    boots = []
    for _ in range(bootstrap):
        idx = np.concatenate([members[g] for g in rng.choice(uniq, len(uniq), replace=True)])
        if 0 < y[idx].sum() < len(idx):
            boots.append(roc_auc_score(y[idx], oof[idx]))
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (auc, auc)
    return {"auc": auc, "ci95": [float(lo), float(hi)], "n_real": len(real), "n_fake": len(fake)}


def real_vs_real(real: np.ndarray, groups: np.ndarray, seed: int = 0, **kw) -> dict[str, float]:
    """The control: the real set split in two by tune, one half labelled 'fake'."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(np.asarray(groups).astype(str))
    half = set(rng.permutation(uniq)[: len(uniq) // 2].tolist())
    side = np.array([g in half for g in np.asarray(groups).astype(str)])
    return two_sample_auc(real[~side], real[side], np.asarray(groups)[~side], np.asarray(groups)[side], seed=seed, **kw)
