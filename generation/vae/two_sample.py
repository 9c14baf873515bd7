"""Classifier two-sample test: can a gradient-boosted classifier tell generated tunes from real ones?

Each tune becomes a vector of hand-made melodic, rhythmic and structural features (`features`);
a HistGradientBoostingClassifier is cross-validated with folds grouped by tune (windows of one real
tune, or one generated tune, never sit on both sides of a fold), and the out-of-fold ROC AUC is
reported with a bootstrap interval over groups. 0.5: indistinguishable; 1.0: told apart perfectly.
Run real against real (two disjoint sets of tunes) as the control: it should come out near 0.5.

`wide_features` adds about 80 more (bar-aware rhythm, motif reuse, contour, the key's scale degrees,
interval and onset-position histograms), closer to the hundred or so an independent test uses: with
them the served prior's 16-bar samples were told apart with AUC 0.84 where the 46 gave 0.78.
"""

from __future__ import annotations

import numpy as np

from .attributes import notes_of
from .metrics import scale_consistency
from .structure import (
    SIMILARITY_LAGS,
    key_degrees,
    longest_silence,
    phrase_end_long,
    repeat_share,
    self_similarity,
)

_DUR_EDGES = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 10_000])
_INT_EDGES = np.array([-100, -8, -5, -3, -1, 0, 1, 3, 5, 8, 100])  # bins of the signed interval


def _note_arrays(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(onset steps, durations, MIDI pitches) of a token sequence's notes."""
    notes = np.array(notes_of(tokens), dtype=np.int64).reshape(-1, 3)
    return notes[:, 0], notes[:, 1], notes[:, 2]


def features(tokens: np.ndarray, steps: int) -> np.ndarray:
    """A fixed-length feature vector; `steps` is the tune's chunk length (bar structure)."""
    t = np.asarray(tokens, dtype=np.int64)
    T = max(1, len(t))
    on, du, pi = _note_arrays(t)
    if len(on) < 2:
        return np.zeros(N_FEATURES)
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
        len(on) / T * 16,  # notes per 16 steps
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


def _distinct_share(seq: np.ndarray, k: int) -> float:
    pats = {tuple(seq[i : i + k]) for i in range(len(seq) - k + 1)}
    return len(pats) / max(1, len(seq) - k + 1)


def _autocorrelation(x: np.ndarray, lag: int) -> float:
    a, b = x[:-lag], x[lag:]
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and a.std() > 0 and b.std() > 0 else 0.0


def wide_extra(tokens: np.ndarray, steps: int, bar: int) -> np.ndarray:
    """The features `wide_features` adds to `features`; `bar`: steps per bar."""
    t = np.asarray(tokens, dtype=np.int64)
    on, du, pi = _note_arrays(t)
    if len(on) < 3:
        return np.zeros(N_WIDE_EXTRA)
    iv = np.diff(pi)
    n_bars = max(1, len(t) // bar)
    degree = key_degrees(pi, du)
    degree_hist = np.bincount(degree, weights=du, minlength=12) / du.sum()
    interval_hist = np.bincount(np.clip(iv, -12, 12) + 12, minlength=25) / len(iv)
    position_hist = np.bincount((on % bar) * 16 // bar, minlength=16) / len(on)
    per_bar = np.bincount(np.minimum(on // bar, n_bars - 1), minlength=n_bars)
    bar_rhythms = [tuple((on[on // bar == b] % bar).tolist()) for b in range(n_bars)]
    downbeat = degree[on % bar == 0]
    leaps = np.abs(iv) >= 5
    recovered = [np.sign(iv[i + 1]) == -np.sign(iv[i]) for i in range(len(iv) - 1) if leaps[i]]
    chunk_of = on // steps
    chunk_means = [pi[chunk_of == c].mean() for c in np.unique(chunk_of)]
    chunk_ranges = [np.ptp(pi[chunk_of == c]) for c in np.unique(chunk_of)]
    similarity = self_similarity(t, steps)
    ends4, ends8 = phrase_end_long(t, bar, 4), phrase_end_long(t, bar, 8)
    half = len(pi) // 2
    vec = [
        per_bar.mean(),
        per_bar.std(),
        per_bar.min(),
        per_bar.max(),
        np.mean([bar_rhythms[i] in bar_rhythms[:i] for i in range(1, n_bars)]) if n_bars > 1 else 0.0,
        len(set(bar_rhythms)) / n_bars,
        _distinct_share(iv, 2),
        _distinct_share(iv, 3),
        _distinct_share(iv, 4),
        np.mean(du[1:] == du[:-1]),
        np.mean(np.isin(downbeat, [0, 4, 7])) if len(downbeat) else 0.0,
        np.mean(np.isin(downbeat, [9, 0, 4])) if len(downbeat) else 0.0,
        np.mean(np.abs(iv) <= 2),
        leaps.mean(),
        np.mean(recovered) if recovered else 0.0,
        np.sum((pi[1:-1] > pi[:-2]) & (pi[1:-1] >= pi[2:])) / n_bars,
        np.mean(iv > 0),
        np.mean(iv < 0),
        *[similarity.get(lag, 0.0) for lag in SIMILARITY_LAGS],
        -1.0 if ends4 is None else ends4,
        -1.0 if ends8 is None else ends8,
        np.std(chunk_means),
        np.mean(chunk_ranges),
        np.std(chunk_ranges),
        np.polyfit(on, pi, 1)[0] * len(t) if len(set(on.tolist())) > 1 else 0.0,
        *[_autocorrelation(pi, lag) for lag in (2, 4, 8)],
        degree[0] in (0, 4, 7),
        degree[-1] in (0, 9),
        degree[-1] == 0,
        pi[:half].mean() - pi[half:].mean(),
        np.argmax(pi) / len(pi),
        du[-1] >= 4,
        np.mean(du >= 8),
        np.mean(du == 1),
        len(set(pi.tolist())),
        np.mean(np.abs(iv) == 12),
    ]
    return np.nan_to_num(np.concatenate([np.asarray(vec, dtype=float), degree_hist, interval_hist, position_hist]))


N_WIDE_EXTRA = 41 + 12 + 25 + 16


def wide_feature_matrix(tunes: list[np.ndarray], steps: list[int], bars: list[int]) -> np.ndarray:
    """`features` and `wide_extra` side by side (one row per tune; `bars`: each tune's steps per bar)."""
    if not tunes:
        return np.zeros((0, N_FEATURES + N_WIDE_EXTRA))
    return np.stack([np.concatenate([features(t, s), wide_extra(t, s, b)]) for t, s, b in zip(tunes, steps, bars)])


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
