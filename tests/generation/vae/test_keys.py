"""The key model (keys.py): its features, what it learns from training tunes, its place in the
checkpoint, and that a key-normalized composer draws new tunes' keys from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from generation.vae.checkpoint import save_checkpoint, save_prior
from generation.vae.keys import LENGTH_EDGES, PITCH_LOW, PITCHES, fit_key_model, key_features, key_probs
from generation.vae.longform import LongformComposer
from generation.vae.representation import FIRST_NOTE, MIN_PITCH, OFF

METERS = [[4, 4], [6, 8]]


def chunk(pitches: list[int], durations: list[int], steps: int = 32) -> np.ndarray:
    """One chunk window: the notes one after another from step 0, OFF after the last, padded to 32."""
    w = np.zeros(32, dtype=np.int8)
    at = 0
    for p, d in zip(pitches, durations):
        w[at] = FIRST_NOTE + p - MIN_PITCH
        at += d
    if at < steps:
        w[at] = OFF
    return w


def test_features_are_the_tunes_range_pitch_classes_meter_and_length():
    # two chunks of 6/8 (24 steps each): C4 for 12 steps, G4 for 12; then E4 for 24 steps
    windows = np.stack([chunk([60, 67], [12, 12], 24), chunk([64], [24], 24)])
    windows[0, 24:] = FIRST_NOTE + 90 - MIN_PITCH  # past the meter's steps: not part of the tune
    x = key_features(windows, (6, 8), METERS)
    reg, low, high = x[:PITCHES], x[PITCHES : 2 * PITCHES], x[2 * PITCHES : 3 * PITCHES]
    assert reg.argmax() + PITCH_LOW == round((60 + 67 + 64) / 3) and reg.sum() == 1
    assert low.argmax() + PITCH_LOW == 60 and high.argmax() + PITCH_LOW == 67
    meter = x[3 * PITCHES : 3 * PITCHES + len(METERS)]
    assert meter.tolist() == [0.0, 1.0]
    length = x[3 * PITCHES + len(METERS) : -12]
    assert length.tolist() == [1.0] + [0.0] * len(LENGTH_EDGES)  # 2 chunks: under the first edge
    pcs = x[-12:]
    np.testing.assert_allclose(pcs[[0, 4, 7]], [12 / 48, 24 / 48, 12 / 48])  # by duration
    assert key_features(np.repeat(windows, 10, 0), (3, 4), METERS)[3 * PITCHES : 3 * PITCHES + 2].sum() == 0
    assert key_features(np.repeat(windows, 10, 0), (6, 8), METERS)[3 * PITCHES + len(METERS) + 2] == 1


def training_tunes(rng: np.random.Generator, count: int) -> list[tuple[np.ndarray, list[int], int]]:
    """Tunes in C whose key follows their lowest note and meter: a tune reaching down to B3 was a D
    tune (moved down 2 to reach C), one staying above G4 a G tune (moved up 5); a low 6/8 tune was in
    A (moved up 3)."""
    out = []
    for _ in range(count):
        low = bool(rng.integers(2))
        meter = METERS[int(rng.integers(2))]
        base = 59 if low else 67
        windows = np.stack([chunk([base + int(rng.integers(0, 3)), base + 5, base + 9], [8, 8, 16]) for _ in range(4)])
        shift = (3 if meter == [6, 8] else 2) if low else -5
        out.append((windows, meter, shift))
    return out


def test_the_model_learns_a_tunes_key_from_its_range_and_meter():
    rng = np.random.default_rng(0)
    model = fit_key_model(training_tunes(rng, 200), METERS)
    assert np.asarray(model["coef"]).shape == (12, 3 * PITCHES + len(METERS) + len(LENGTH_EDGES) + 1 + 12)
    for windows, meter, shift in training_tunes(np.random.default_rng(1), 30):
        p = key_probs(model, windows, meter)
        assert p.sum() == pytest.approx(1.0)
        assert p.argmax() - 6 == shift and p.max() > 0.8
    assert np.asarray(model["intercept"])[[0, 2, 6, 11]].max() == -30.0  # shifts no tune had (-6, -4, 0, 5)


@pytest.mark.parametrize("composer", ["codebook"], indirect=True)
def test_a_key_normalized_composer_draws_keys_from_its_key_model(composer):
    """A model that puts 3/4 tunes up 2 and 4/4 tunes down 3 decides the keys, over the register table."""
    composer.key_normalized = True
    width = 3 * PITCHES + 2 + len(LENGTH_EDGES) + 1 + 12
    coef = np.zeros((12, width))
    coef[6 + 2, 3 * PITCHES] = 50.0  # the first meter's one-hot: (3, 4)
    coef[6 - 3, 3 * PITCHES + 1] = 50.0  # (4, 4)
    composer.key_model = {"meters": [[3, 4], [4, 4]], "coef": coef.tolist(), "intercept": [0.0] * 12}
    counts = np.zeros((128, 12))
    counts[:, 6] = 1e6  # the register table would leave every tune in C
    composer.key_shifts_by_register = {"low": 0, "counts": counts.tolist()}
    assert {t.shift for t in composer.sample(4, meter=(3, 4), seed=0, count=8)} == {2}
    assert {t.shift for t in composer.sample(4, meter=(4, 4), seed=0, count=8)} == {-3}
    composer.key_model = None
    assert {t.shift for t in composer.sample(4, meter=(4, 4), seed=0, count=8)} == {0}


@pytest.mark.parametrize("composer", ["codebook"], indirect=True)
def test_a_tune_shaped_as_a_longer_tunes_section_draws_its_key_as_tunes_of_that_length(composer):
    """A key model that puts tunes under 8 chunks up 2 and tunes of 16-23 chunks down 3: a 4-chunk
    tune that takes the form of a whole 4-chunk tune is moved up 2, one that takes the first section
    of a 16-chunk tune down 3; left to the pointer, its own length decides."""
    composer.key_normalized = True
    at = 3 * PITCHES + 1  # after the one meter's one-hot: the length buckets
    coef = np.zeros((12, at + len(LENGTH_EDGES) + 1 + 12))
    coef[6 + 2, at + 0] = 50.0  # under 8 chunks
    coef[6 - 3, at + 2] = 50.0  # 16-23 chunks
    composer.key_model = {"meters": [[4, 4]], "coef": coef.tolist(), "intercept": [0.0] * 12}
    whole, long = [-1, 0, -1, 0], [-1, -1, 0, 1] + [-1] * 12
    composer.forms = {"meters": [[4, 4]] * 2, "lengths": [4, 16], "pointers": [whole, long]}
    tunes = composer.sample(4, meter=(4, 4), seed=0, count=24)
    by_form = {tuple(t.source.tolist()): set() for t in tunes}
    for t in tunes:
        by_form[tuple(t.source.tolist())].add(t.shift)
    assert by_form == {tuple(whole): {2}, tuple(long[:4]): {-3}}
    pointer = composer.sample_batch(4, [(4, 4)] * 8, [True] * 8, seed=0, forms=False)
    assert {t.shift for t in pointer} == {2}


def test_refresh_keys_stores_the_model_the_composer_loads(tmp_path, composer):
    from generation.vae.prior_train import refresh_keys

    tunes = training_tunes(np.random.default_rng(0), 120) + [
        (np.stack([chunk([60], [32])] * 4), [3, 8], 0)
        for _ in range(5)  # a meter too rare to know
    ]
    offsets = np.cumsum([0] + [len(w) for w, _, _ in tunes])
    cache = {
        "names": [f"t{i}" for i in range(len(tunes))],
        "meters": torch.tensor([m for _, m, _ in tunes]),
        "shifts": torch.tensor([-s for _, _, s in tunes]),  # how far each was moved to reach C
        "offsets": torch.from_numpy(offsets),
        "windows": torch.from_numpy(np.concatenate([w for w, _, _ in tunes])),
        "key_normalized": True,
    }
    torch.save(cache, tmp_path / "latents.pt")
    (tmp_path / "split.json").write_text(json.dumps({"train": cache["names"][:100]}))
    path = save_prior(tmp_path / "p.pt", composer.prior, vae="mel_tiny.pt", metrics={"key_normalized": True})
    save_checkpoint(tmp_path / "mel_tiny.pt", composer.vae)
    out = refresh_keys(path, str(tmp_path / "latents.pt"), str(tmp_path / "split.json"))
    assert out["tunes"] == 100 and sorted(out["meters"]) == sorted(METERS)
    loaded = LongformComposer.load(path)
    assert loaded.key_model is not None and loaded.key_model["tunes"] == 100
    windows, meter, shift = training_tunes(np.random.default_rng(5), 1)[0]
    assert key_probs(loaded.key_model, windows, meter).argmax() - 6 == shift
    cache["key_normalized"] = False
    torch.save(cache, tmp_path / "latents.pt")
    with pytest.raises(SystemExit, match="not a key-normalized"):
        refresh_keys(path, str(tmp_path / "latents.pt"), str(tmp_path / "split.json"))
