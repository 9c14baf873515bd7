"""Sample-quality metrics: MGEval-style overlap areas (Yang & Lerch 2018) and scale consistency.

For each feature, every melody gets a feature value (a histogram or a number). The reference set's
intra-set distances (between held-out melodies) and the inter-set distances (generated vs held-out)
are each smoothed with a Gaussian KDE; the overlap area of the two densities is 1 when generated
melodies sit among the real ones exactly as real ones sit among themselves.
"""

from __future__ import annotations

import numpy as np

from .attributes import notes_of

FEATURES = ("pitch_class_histogram", "pitch_range", "note_length_histogram", "inter_onset_interval", "pitch_interval")
_NOTE_LENGTH_BINS = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 10_000])  # in 16ths: edges of 10 bins
DIATONIC = (0, 2, 4, 5, 7, 9, 11)  # a major scale's pitch classes (its modes: the same set)


def melody_features(tokens: np.ndarray) -> dict[str, np.ndarray]:
    notes = notes_of(tokens)
    pcs = np.zeros(12)
    nlh = np.zeros(len(_NOTE_LENGTH_BINS) - 1)
    if not notes:
        return {
            "pitch_class_histogram": pcs,
            "pitch_range": np.zeros(1),
            "note_length_histogram": nlh,
            "inter_onset_interval": np.zeros(1),
            "pitch_interval": np.zeros(1),
        }
    on = np.array([n[0] for n in notes])
    du = np.array([n[1] for n in notes])
    pi = np.array([n[2] for n in notes])
    np.add.at(pcs, pi % 12, 1)
    idx = np.clip(np.searchsorted(_NOTE_LENGTH_BINS, du, side="right") - 1, 0, len(nlh) - 1)
    np.add.at(nlh, idx, 1)
    return {
        "pitch_class_histogram": pcs / pcs.sum(),
        "pitch_range": np.array([float(pi.max() - pi.min())]),
        "note_length_histogram": nlh / nlh.sum(),
        "inter_onset_interval": np.array([float(np.diff(on).mean()) if len(on) > 1 else 0.0]),
        "pitch_interval": np.array([float(np.abs(np.diff(pi)).mean()) if len(pi) > 1 else 0.0]),
    }


def scale_consistency(tokens: np.ndarray) -> float:
    """Share of notes in the best-fitting diatonic scale (any of 12 transpositions)."""
    notes = notes_of(tokens)
    if not notes:
        return 0.0
    pcs = np.array([p % 12 for _, _, p in notes])
    return max(float(np.isin(pcs, (np.array(DIATONIC) + k) % 12).mean()) for k in range(12))


def _kde(samples: np.ndarray, grid: np.ndarray) -> np.ndarray:
    s = samples.astype(np.float64)
    std = s.std()
    bw = 1.06 * (std if std > 0 else 1e-3) * len(s) ** (-1 / 5)  # Silverman's rule
    d = (grid[:, None] - s[None, :]) / bw
    return np.exp(-0.5 * d * d).sum(1) / (len(s) * bw * np.sqrt(2 * np.pi))


def overlap_area(a: np.ndarray, b: np.ndarray, points: int = 1000, max_samples: int = 20_000) -> float:
    # A fixed random subset of the distances: the densities are the same, memory stays ~160 MB.
    rng = np.random.default_rng(0)
    a = a if len(a) <= max_samples else rng.choice(a, max_samples, replace=False)
    b = b if len(b) <= max_samples else rng.choice(b, max_samples, replace=False)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    pad = 0.1 * (hi - lo + 1e-6)
    grid = np.linspace(lo - pad, hi + pad, points)
    pa, pb = _kde(a, grid), _kde(b, grid)
    return float(np.trapezoid(np.minimum(pa, pb), grid))


def _pairwise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))


def compare_sets(generated: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Overlap area per feature, plus mean scale consistency of both sets."""
    fg = [melody_features(t) for t in generated]
    fr = [melody_features(t) for t in reference]
    out: dict[str, float] = {}
    for name in FEATURES:
        g = np.stack([f[name] for f in fg])
        r = np.stack([f[name] for f in fr])
        intra = _pairwise(r, r)[np.triu_indices(len(r), 1)]
        inter = _pairwise(g, r).ravel()
        out[f"oa_{name}"] = overlap_area(intra, inter)
    out["oa_mean"] = float(np.mean([out[f"oa_{n}"] for n in FEATURES]))
    out["scale_consistency"] = float(np.mean([scale_consistency(t) for t in generated]))
    out["scale_consistency_reference"] = float(np.mean([scale_consistency(t) for t in reference]))
    out["notes_per_melody"] = float(np.mean([len(notes_of(t)) for t in generated]))
    return out
