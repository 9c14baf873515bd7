from __future__ import annotations

import numpy as np
import torch

from generation.vae.attributes import attribute_values, attribute_vectors, notes_of
from generation.vae.baselines import LSTMLanguageModel, NGramModel
from generation.vae.metrics import FEATURES, compare_sets, scale_consistency
from generation.vae.representation import HOLD, OFF, pitch_to_token


def _scale_melodies(n: int, rng: np.random.Generator, scale=(0, 2, 4, 5, 7, 9, 11)) -> np.ndarray:
    rows = []
    for _ in range(n):
        row = np.zeros(32, dtype=np.int64)
        for i in range(0, 32, int(rng.choice([2, 4]))):
            row[i] = pitch_to_token(60 + int(rng.choice(scale)) + 12 * int(rng.integers(0, 2)))
        rows.append(row)
    return np.stack(rows)


def test_notes_and_attributes():
    toks = np.array([pitch_to_token(60), HOLD, OFF, HOLD, pitch_to_token(64), HOLD, HOLD, HOLD])
    assert notes_of(toks) == [(0, 2, 60), (4, 4, 64)]
    vals = attribute_values(toks)
    assert vals["note_density"] == 2 / 8 and vals["register"] == 62.0


def test_attribute_vector_points_from_low_to_high():
    z = torch.zeros(8, 2)
    z[:, 0] = torch.arange(8.0)
    vec = attribute_vectors(z, np.arange(8.0)[:, None])
    assert vec.shape == (1, 2) and vec[0, 0] > 0 and vec[0, 1] == 0


def test_overlap_is_high_for_the_same_distribution_and_low_for_a_different_one():
    rng = np.random.default_rng(0)
    ref, same = _scale_melodies(80, rng), _scale_melodies(80, rng)
    chromatic = rng.integers(2, 90, size=(80, 32))
    good, bad = compare_sets(same, ref), compare_sets(chromatic, ref)
    assert good["oa_mean"] > 0.8 and good["oa_mean"] > bad["oa_mean"]
    assert {f"oa_{f}" for f in FEATURES} <= set(good)
    assert scale_consistency(ref[0]) == 1.0


def test_baselines_sample_the_right_shape():
    rng = np.random.default_rng(0)
    data = _scale_melodies(40, rng)
    ngram = NGramModel(order=3).fit(data)
    s = ngram.sample(4, 32, seed=0)
    assert s.shape == (4, 32) and np.array_equal(s, ngram.sample(4, 32, seed=0))
    lm = LSTMLanguageModel(embed_dim=8, hidden=16)
    lm.fit(torch.from_numpy(data), minutes=0.002, batch_size=8, transpose=0)
    assert lm.sample(3, 32, seed=0).shape == (3, 32)
