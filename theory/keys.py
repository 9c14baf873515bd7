"""Key finding by Krumhansl-Schmuckler: correlate a duration-weighted pitch-class histogram with the
Krumhansl-Kessler profiles rotated to each of the 12 tonics."""

from __future__ import annotations

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Krumhansl & Kessler (1982), probe-tone ratings of the major and minor keys.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _rotations(profile: np.ndarray) -> np.ndarray:
    """[12, 12]: row t is the profile with its tonic on pitch class t, centred."""
    rolled = np.stack([np.roll(profile, tonic) for tonic in range(12)])
    return rolled - rolled.mean(axis=1, keepdims=True)


_MAJOR_ROTATIONS = _rotations(MAJOR_PROFILE)
_MINOR_ROTATIONS = _rotations(MINOR_PROFILE)


def key_correlations(histogram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(major, minor): the Pearson correlation of the histogram with each key's profile, indexed
    by tonic pitch class (0 = C). All zeros for an empty or flat histogram."""
    hist = np.asarray(histogram, dtype=np.float64)
    centred = hist - hist.mean()
    norm = np.linalg.norm(centred)
    if norm == 0:
        return np.zeros(12), np.zeros(12)
    major = _MAJOR_ROTATIONS @ centred / (np.linalg.norm(_MAJOR_ROTATIONS, axis=1) * norm)
    minor = _MINOR_ROTATIONS @ centred / (np.linalg.norm(_MINOR_ROTATIONS, axis=1) * norm)
    return major, minor


def estimate_key(histogram: np.ndarray) -> str:
    """'D major', 'A minor'...: the best-correlated key; '' for an empty histogram."""
    if np.asarray(histogram).sum() <= 0:
        return ""
    major, minor = key_correlations(histogram)
    if major.max() >= minor.max():
        return f"{NOTE_NAMES[int(major.argmax())]} major"
    return f"{NOTE_NAMES[int(minor.argmax())]} minor"


def major_minor_score(histogram: np.ndarray) -> float:
    """How much more major than minor: best major correlation minus best minor correlation."""
    major, minor = key_correlations(histogram)
    return float(major.max() - minor.max())
