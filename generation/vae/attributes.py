"""Musical attributes of token sequences, and latent attribute vectors computed from data.

As in MusicVAE: an attribute vector is mean(z of the top quartile) - mean(z of the bottom quartile)
of the training windows ranked by that attribute; steering adds a multiple of it to z.
"""

from __future__ import annotations

import numpy as np
import torch

from theory.keys import major_minor_score

from .representation import FIRST_NOTE, MIN_PITCH, OFF

ATTRIBUTES = ("note_density", "register", "major_minor", "syncopation")


def notes_of(tokens: np.ndarray) -> list[tuple[int, int, int]]:
    """(onset step, duration in steps, MIDI pitch) for each note of a token sequence."""
    out: list[tuple[int, int, int]] = []
    cur = None
    for i, t in enumerate(np.asarray(tokens).tolist()):
        if t >= FIRST_NOTE or t == OFF:
            if cur is not None:
                out.append((cur[0], i - cur[0], cur[1]))
                cur = None
            if t >= FIRST_NOTE:
                cur = (i, t - FIRST_NOTE + MIN_PITCH)
    if cur is not None:
        out.append((cur[0], len(tokens) - cur[0], cur[1]))
    return out


def attribute_values(tokens: np.ndarray) -> dict[str, float]:
    notes = notes_of(tokens)
    T = len(tokens)
    if not notes:
        return {"note_density": 0.0, "register": 0.0, "major_minor": 0.0, "syncopation": 0.0}
    pitches = np.array([p for _, _, p in notes], dtype=float)
    durs = np.array([d for _, d, _ in notes], dtype=float)
    hist = np.zeros(12)
    np.add.at(hist, pitches.astype(int) % 12, durs)
    mm = major_minor_score(hist)  # Krumhansl-Kessler, as the catalog finds keys
    # Syncopation: share of onsets off the beat (not on a quarter-note position) that are held
    # across the next beat, a simple proxy that needs no meter.
    sync = sum(1 for s, d, _ in notes if s % 4 != 0 and (s % 4) + d > 4) / len(notes)
    return {
        "note_density": len(notes) / T,
        "register": float(pitches.mean()),
        "major_minor": mm,
        "syncopation": float(sync),
    }


def attribute_matrix(windows: np.ndarray) -> np.ndarray:
    """[N, len(ATTRIBUTES)] for a batch of token windows."""
    return np.array([[attribute_values(w)[a] for a in ATTRIBUTES] for w in windows], dtype=np.float64)


def attribute_vectors(z: torch.Tensor, values: np.ndarray) -> torch.Tensor:
    """[n_attr, z_dim]: top-quartile mean z minus bottom-quartile mean z, per attribute."""
    vecs = []
    for j in range(values.shape[1]):
        v = values[:, j]
        lo, hi = np.quantile(v, 0.25), np.quantile(v, 0.75)
        top = torch.from_numpy(v >= hi)
        bot = torch.from_numpy(v <= lo)
        if top.sum() == 0 or bot.sum() == 0 or hi == lo:
            vecs.append(torch.zeros(z.shape[1]))
        else:
            vecs.append(z[top].mean(0) - z[bot].mean(0))
    return torch.stack(vecs).float()
