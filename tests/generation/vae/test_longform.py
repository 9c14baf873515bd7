"""The long-form API on tiny untrained models: batched decode, continue/infill keep what they must,
seeded sampling repeats itself, copies are exact, and the prior's checkpoints are safe to load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation.vae.checkpoint import CheckpointError, load_model, load_prior, save_checkpoint, save_prior
from generation.vae.config import MEL_TINY
from generation.vae.longform import LatentTune, LongformComposer
from generation.vae.model import MusicVAE
from generation.vae.prior import PRIOR_TINY, LatentPrior, copy_targets
from generation.vae.representation import FIRST_NOTE

from .conftest import write_melody


@pytest.fixture
def composer() -> LongformComposer:
    torch.manual_seed(0)
    vae = MusicVAE(MEL_TINY)
    prior = LatentPrior(PRIOR_TINY)
    # spread the untrained mixture so different draws give different latents
    prior.z_std.fill_(1.0)
    return LongformComposer(vae, prior, temperature=1.0)


def test_encode_decode_whole_tunes_in_one_batch(tmp_path, composer):
    a = write_melody(tmp_path / "a.mid", list(range(60, 80)), meter=(3, 4))
    b = write_melody(tmp_path / "b.mid", list(range(62, 90)), meter=(4, 4))
    tunes = composer.encode([a, b])
    assert [t.meter for t in tunes] == [(3, 4), (4, 4)]
    assert [t.n_chunks for t in tunes] == [2, 2]
    calls = []
    orig = composer.vae.generate
    composer.vae.generate = lambda z, **kw: calls.append(len(z)) or orig(z, **kw)
    tokens = composer.decode(tunes)
    assert len(calls) == 1  # every chunk of every tune in one decoder pass
    assert [len(t) for t in tokens] == [2 * 24, 2 * 32]


def test_equal_latents_decode_to_equal_chunks(composer):
    z = torch.randn(3, MEL_TINY.z_dim)
    z[2] = z[0]
    w = composer.decode_chunks(z)
    np.testing.assert_array_equal(w[0], w[2])


def test_sampling_is_reproducible_with_a_seed(composer):
    a = composer.sample(6, meter=(6, 8), seed=3, count=2)
    b = composer.sample(6, meter=(6, 8), seed=3, count=2)
    c = composer.sample(6, meter=(6, 8), seed=4, count=2)
    for x, y in zip(a, b):
        assert torch.equal(x.z, y.z) and torch.equal(x.ties, y.ties)
    assert not torch.equal(a[0].z, c[0].z)
    assert all(t.meter == (6, 8) and t.n_chunks == 6 for t in a)


def test_continue_keeps_its_prompt_token_for_token(composer):
    prompt = composer.sample(3, seed=1)[0]
    longer = composer.continue_from(prompt, n_total=7, seed=2)
    assert longer.n_chunks == 7
    assert torch.equal(longer.z[:3], prompt.z) and torch.equal(longer.ties[:3], prompt.ties)
    before, after = composer.decode([prompt, longer])
    np.testing.assert_array_equal(after[: len(before)], before)


def test_infill_keeps_unmasked_chunks_token_for_token(composer):
    tune = composer.sample(6, seed=5)[0]
    mask = np.array([False, True, True, False, False, True])
    filled = composer.infill(tune, mask, seed=6, candidates=4)
    keep = torch.from_numpy(~mask)
    assert torch.equal(filled.z[keep], tune.z[keep])
    assert not torch.equal(filled.z[1], tune.z[1])
    old, new = composer.decode([tune, filled])
    steps = tune.steps
    for k in np.flatnonzero(~mask):
        if k > 0 and mask[k - 1]:
            continue  # the first step of a kept chunk after a new one may become HOLD/OFF by the boundary rule
        np.testing.assert_array_equal(new[k * steps : (k + 1) * steps], old[k * steps : (k + 1) * steps])


def test_copy_choice_repeats_a_chunk_exactly(composer):
    # make the pointer always choose "copy the first chunk" from position 1 on
    p = composer.prior
    with torch.no_grad():
        p.new_logit.bias.fill_(-1e4)
    tune = composer.sample(5, seed=0)[0]
    assert tune.source[1:].tolist() == [0, 0, 0, 0] or all(s >= 0 for s in tune.source[1:].tolist())
    for k in range(1, 5):
        assert torch.equal(tune.z[k], tune.z[int(tune.source[k])])
    valid = torch.ones(1, 5, dtype=torch.bool)
    assert copy_targets(tune.z[None], valid)[0, 1:].any(-1).all()


def test_likelihood_prefers_the_copy_it_was_trained_toward(composer):
    p = composer.prior
    z = torch.randn(1, 4, PRIOR_TINY.z_dim)
    z[0, 2] = z[0, 0]
    args = (torch.zeros(1, 4, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool))
    cond = (torch.tensor([1]), torch.tensor([4]), torch.tensor([True]))
    ll = p.log_likelihood(z, *args, *cond)
    assert int(ll["n_copy"]) == 1 and torch.isfinite(ll["z"]).all()


def test_prior_checkpoint_round_trip_and_refusals(tmp_path, composer):
    path = save_prior(tmp_path / "prior.pt", composer.prior, vae="mel_tiny.pt", metrics={"served_temperature": 0.9})
    blob = torch.load(path, weights_only=True)  # plain tensors and dicts only
    assert blob["format"] == "refrain-latent-prior"
    prior, blob = load_prior(path)
    assert blob["metrics"]["served_temperature"] == 0.9
    for k, v in composer.prior.state_dict().items():
        assert torch.allclose(prior.state_dict()[k], v.half().float() if not k.startswith("z_") else v, atol=1e-3)
    vae_path = save_checkpoint(tmp_path / "vae.pt", composer.vae)
    with pytest.raises(CheckpointError, match="not a Refrain latent prior"):
        load_prior(vae_path)
    with pytest.raises(CheckpointError, match="not a Refrain MusicVAE"):
        load_model(path)
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError):
        load_prior(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError):
        load_prior(tmp_path / "junk.pt")


def test_bad_requests_are_refused(composer):
    with pytest.raises(ValueError):
        composer.sample(PRIOR_TINY.max_chunks + 1)
    tune = LatentTune(torch.zeros(3, PRIOR_TINY.z_dim), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError):
        composer.infill(tune, np.zeros(4, bool))
    with pytest.raises(ValueError):
        composer.continue_from(tune, n_total=2)


def test_decoded_sample_is_a_melody(composer):
    tokens = composer.decode(composer.sample(4, meter=(3, 4), seed=0))[0]
    assert len(tokens) == 4 * 24 and tokens.min() >= 0
    assert isinstance(composer.to_midi_bytes(tokens, meter=(3, 4)), bytes)
    assert (tokens >= FIRST_NOTE).sum() >= 0


def test_training_learns_copies_from_a_latent_cache(tmp_path):
    """A few seconds on a synthetic cache whose tunes repeat chunks: valid copy NLL must fall."""
    from generation.vae.prior_train import latent_set, make_batch, train_prior

    rng = np.random.default_rng(0)
    names, offs, zs, wins = [], [0], [], []
    for t in range(40):
        n = int(rng.integers(4, 12))
        base = rng.normal(size=(3, PRIOR_TINY.z_dim))
        idx = np.array([0, 1, 0, 2] * 3)[:n]
        zs.append(base[idx])
        w = np.zeros((n, 32), dtype=np.int8)
        w[:, 0] = idx + 2 + 3 * t  # equal windows exactly where the latents are equal
        wins.append(w)
        names.append(f"t{t}")
        offs.append(offs[-1] + n)
    cache = {
        "names": names,
        "meters": torch.tensor([[4, 4]] * 40),
        "shifts": torch.zeros(40, dtype=torch.long),
        "offsets": torch.tensor(offs),
        "z": torch.from_numpy(np.concatenate(zs)).half(),
        "ties": torch.zeros(offs[-1], dtype=torch.bool),
        "windows": torch.from_numpy(np.concatenate(wins)),
    }
    split = {"train": names[:32], "valid": names[32:], "test": []}
    batch = make_batch(latent_set(cache, set(split["train"])), [0, 1], 32, None)
    assert batch["copies"][0, 2, 0] and not batch["copies"][0, 1, 0]  # chunk 2 repeats chunk 0
    report = train_prior(cache, split, tmp_path, PRIOR_TINY, minutes=0.08, threads=1, eval_every_s=1.0)
    hist = report["history"]
    assert hist[-1]["copy_nll"] < hist[0]["copy_nll"]
    prior, _ = load_prior(tmp_path / "prior.pt")
    assert prior.cfg == PRIOR_TINY


def test_fill_keeps_known_chunks_when_rows_of_a_batch_differ(composer):
    p = composer.prior
    z = torch.randn(2, 4, PRIOR_TINY.z_dim)
    ties = torch.tensor([[False, True, True, False], [False, False, False, False]])
    known = torch.tensor([[True, False, True, False], [False, True, False, True]])
    out, out_ties, source = p.fill(z, ties, known, torch.tensor([1, 1]), torch.tensor([True, True]), 1.0)
    assert torch.equal(out[known], z[known]) and torch.equal(out_ties[known], ties[known])
    assert (source[known] == -2).all() and (source[~known] >= -1).all()
    assert not torch.equal(out[~known], z[~known])


def test_key_normalized_composer_encodes_in_c_and_moves_back(tmp_path, composer):
    from generation.vae.longform import shift_tokens

    composer.key_normalized = True
    composer.key_shift_probs = torch.tensor([0.0] * 8 + [1.0] + [0.0] * 3)  # always +2
    path = write_melody(tmp_path / "d.mid", [62, 64, 66, 67, 69, 71, 73, 74], durations=[4, 2, 2, 4])
    tune = composer.encode(path)[0]
    assert tune.shift == 2  # D major was moved to C for the latents
    np.testing.assert_array_equal(composer.decode(tune)[0], shift_tokens(composer.decode(replace_shift(tune))[0], 2))
    assert all(t.shift == 2 for t in composer.sample(2, seed=0, count=3))
    assert composer.continue_from(tune, 3, seed=0).shift == 2
    up = shift_tokens(np.array([FIRST_NOTE + 80, 0, FIRST_NOTE + 85]), 5)  # would leave the range: an octave lower
    assert up.tolist() == [FIRST_NOTE + 73, 0, FIRST_NOTE + 78]


def replace_shift(tune: LatentTune) -> LatentTune:
    return LatentTune(tune.z, tune.ties, tune.meter, shift=0)


def test_copy_bias_moves_the_share_of_repeats(composer):
    never = composer.sample(6, seed=0, count=4, copy_bias=-50.0)
    always = composer.sample(6, seed=0, count=4, copy_bias=50.0)
    assert all((t.source == -1).all() for t in never)
    assert all((t.source[1:] >= 0).all() for t in always)
