"""The long-form API on tiny untrained models: batched decode, continue/infill keep what they must,
seeded sampling repeats itself, copies are exact, and the prior's checkpoints are safe to load."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from generation.vae.checkpoint import CheckpointError, load_model, load_prior, save_checkpoint, save_prior
from generation.vae.config import MEL_TINY
from generation.vae.longform import LatentTune, LongformComposer
from generation.vae.prior import PRIOR_TINY, LatentPrior, copy_targets, meter_index
from generation.vae.representation import FIRST_NOTE

from .conftest import PRIOR_CODES, write_melody


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
    assert not torch.equal(filled.z[~keep], tune.z[~keep])  # written anew (a codebook may redraw one chunk)
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
        if not v.is_floating_point():
            assert torch.equal(prior.state_dict()[k], v)  # a codebook's renderings, as they were
            continue
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


def synthetic_cache(tunes: int = 40, seed: int = 0) -> dict:
    """A latent cache whose tunes repeat chunks (A B A C ...), equal windows where latents are equal."""
    rng = np.random.default_rng(seed)
    names, offs, zs, wins = [], [0], [], []
    for t in range(tunes):
        n = int(rng.integers(4, 12))
        base = rng.normal(size=(3, PRIOR_TINY.z_dim))
        idx = np.array([0, 1, 0, 2] * 3)[:n]
        zs.append(base[idx])
        w = np.zeros((n, 32), dtype=np.int8)
        w[:, 0] = idx + 2 + 3 * t  # equal windows exactly where the latents are equal
        wins.append(w)
        names.append(f"t{t}")
        offs.append(offs[-1] + n)
    return {
        "names": names,
        "meters": torch.tensor([[4, 4]] * tunes),
        "shifts": torch.zeros(tunes, dtype=torch.long),
        "offsets": torch.tensor(offs),
        "z": torch.from_numpy(np.concatenate(zs)).half(),
        "ties": torch.zeros(offs[-1], dtype=torch.bool),
        "windows": torch.from_numpy(np.concatenate(wins)),
    }


def test_training_learns_copies_from_a_latent_cache(tmp_path):
    """A few seconds on a synthetic cache whose tunes repeat chunks: valid copy NLL must fall."""
    from generation.vae.prior_train import latent_set, make_batch, train_prior

    cache = synthetic_cache()
    names = cache["names"]
    split = {"train": names[:32], "valid": names[32:], "test": []}
    batch = make_batch(latent_set(cache, set(split["train"])), [0, 1], 32, None)
    assert batch["copies"][0, 2, 0] and not batch["copies"][0, 1, 0]  # chunk 2 repeats chunk 0
    report = train_prior(cache, split, tmp_path, PRIOR_TINY, minutes=0.08, threads=1, eval_every_s=1.0)
    hist = report["history"]
    assert hist[-1]["copy_nll"] < hist[0]["copy_nll"]
    prior, _ = load_prior(tmp_path / "prior.pt")
    assert prior.cfg == PRIOR_TINY


@pytest.mark.parametrize("meter_softmax", [False, True])
def test_codebook_prior_trains_on_real_chunks_and_warm_starts(tmp_path, meter_softmax):
    """Every distinct training chunk becomes a code, with its own window; training lowers the valid
    NLL; a warm start from a mixture prior keeps every weight the two kinds share."""
    from generation.vae.prior_train import latent_set, train_prior, warm_start

    cache = synthetic_cache(60)
    names = cache["names"]
    split = {"train": names[:48], "valid": names[48:], "test": []}
    # any codebook: one code per distinct training chunk
    cfg = dataclasses.replace(PRIOR_CODES, codebook=1, meter_softmax=meter_softmax)
    report = train_prior(cache, split, tmp_path / "codes", cfg, minutes=0.08, threads=1, eval_every_s=1.0)
    assert report["history"][-1]["nll_per_chunk"] < report["history"][0]["nll_per_chunk"]
    train = latent_set(cache, set(split["train"]))
    rows = torch.cat([torch.arange(s, s + n) for s, n in zip(train.starts, train.lengths)])
    train_windows = {w.numpy().tobytes() for w in cache["windows"][rows]}
    prior, _ = load_prior(tmp_path / "codes" / "prior.pt")
    assert prior.cfg.codebook == len(train_windows) == report["codebook"]["codes"]
    assert {w.numpy().tobytes() for w in prior.code_windows} == train_windows  # the codes are the real chunks
    assert prior.code_meters[:, 1].all() and not prior.code_meters[:, 0].any()  # every synthetic tune is 4/4

    mixture = LatentPrior(PRIOR_TINY)
    with torch.no_grad():
        mixture.pos.weight.normal_()
    path = save_prior(tmp_path / "mixture.pt", mixture, vae="mel_tiny.pt")
    started = warm_start(path, {"codebook": 7})
    assert started.cfg.codebook == 7 and started.code_coords.shape == (7, PRIOR_TINY.pca_dim)
    assert torch.allclose(started.pos.weight, mixture.pos.weight.half().float())


@pytest.mark.parametrize("composer", ["codebook"], indirect=True)
def test_codebook_draws_are_codes_and_top_p_cuts_the_tail(composer):
    from generation.vae.prior import sample_codes

    tunes = composer.sample(6, seed=0, count=5, copy_bias=-50.0)
    codes = composer.prior.code_latents()
    for t in tunes:
        assert all((codes == chunk).all(-1).any() for chunk in t.z)
        assert torch.equal(codes[composer.prior.nearest_code(t.z)], t.z)
    logits = torch.tensor([[3.0, 2.9, 0.0, 0.0, -1.0]]).repeat(400, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_codes(logits, 1.0, 0.6, g).tolist()) <= {0, 1}  # the nucleus: the two likeliest
    assert set(sample_codes(logits, 1.0, 1.0, g).tolist()) > {0, 1}
    assert set(sample_codes(logits, 1.0, 0.01, g).tolist()) == {0}


@pytest.mark.parametrize("top_p", [0.9, 1.0])
def test_draws_that_share_a_row_each_draw_from_their_own_row(top_p):
    """`take`: a row's distribution is computed once and drawn from by every draw that points at it."""
    from generation.vae.prior import sample_codes

    logits = torch.tensor([[9.0, 8.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 8.0, 9.0]])
    take = torch.tensor([0, 1, 1, 0] * 100)
    drawn = sample_codes(logits, 1.0, top_p, torch.Generator().manual_seed(0), take)
    assert drawn.shape == take.shape
    assert set(drawn[take == 0].tolist()) == {0, 1} and set(drawn[take == 1].tolist()) == {3, 4}


@pytest.mark.parametrize("composer", ["codebook"], indirect=True)
def test_a_new_chunk_is_never_an_earlier_chunk_of_its_tune(composer):
    """Repeats are the pointer's: a chunk drawn as new is none of the tune's earlier chunks, drawn or
    given (with twelve codes and six chunks a free draw would repeat one in almost every tune)."""
    tunes = composer.sample(6, seed=0, count=40, copy_bias=-50.0)  # the pointer (almost) never copies
    for t in tunes:
        assert (t.source == -1).all()
        assert len(torch.unique(t.z, dim=0)) == t.n_chunks
    prior = composer.prior
    given = prior.code_latents()[[3, 5]]
    z = torch.zeros(40, 6, given.shape[1])
    z[:, :2] = given
    known = torch.zeros(40, 6, dtype=torch.bool)
    known[:, :2] = True
    meter = torch.full((40,), meter_index((4, 4)))
    out, _, source = prior.fill(
        z, torch.zeros(40, 6, dtype=torch.bool), known, meter, torch.ones(40, dtype=torch.bool), copy_bias=-50.0
    )
    codes = prior.nearest_code(out[:, 2:])
    assert (source[:, 2:] == -1).all() and not ((codes == 3) | (codes == 5)).any()


@pytest.mark.parametrize("composer", ["codebook"], indirect=True)
def test_a_tune_is_drawn_from_its_meters_chunks(composer):
    from generation.vae.prior import meter_index

    prior = composer.prior
    with torch.no_grad():
        prior.code_meters[:6, meter_index((4, 4))] = True
        prior.code_meters[6:, meter_index((3, 4))] = True
    for meter, allowed in (((4, 4), set(range(6))), ((3, 4), set(range(6, 12)))):
        tunes = composer.sample(6, meter=meter, seed=1, count=8, copy_bias=-50.0)
        drawn = {int(c) for t in tunes for c in composer._codes_of(t.z)}
        assert drawn <= allowed and len(drawn) > 1
    tunes = composer.sample(6, meter=(6, 8), seed=1, count=8, copy_bias=-50.0)  # no 6/8 chunks: any code
    assert len({int(c) for t in tunes for c in composer._codes_of(t.z)}) > 6


@pytest.mark.parametrize("composer", ["codebook"], indirect=True)
def test_drawn_codes_sound_as_the_chunks_they_stand_for(composer):
    codes = composer.prior.code_latents()
    np.testing.assert_array_equal(composer.decode_chunks(codes), composer.prior.code_windows.long().numpy())
    with torch.no_grad():
        composer.prior.code_windows.zero_()  # a lookup, not the decoder: other windows show through
    assert (composer.decode_chunks(codes) == 0).all()
    off_code = codes[:2] + 0.5  # not a code: decoded
    np.testing.assert_array_equal(
        composer.decode_chunks(off_code), composer.vae.generate(off_code, greedy=True).numpy()
    )
    with torch.no_grad():
        composer.prior.code_coords.mul_(2.0)  # new coordinates: new latents, and the lookup follows them
    assert (composer.decode_chunks(composer.prior.code_latents()) == 0).all()


def test_served_settings_are_written_into_the_checkpoint(tmp_path, composer):
    from generation.vae.checkpoint import set_prior_metrics

    path = save_prior(tmp_path / "p.pt", composer.prior, vae="mel_tiny.pt", metrics={"valid": {"nll": 1.0}})
    set_prior_metrics(path, {"served_temperature": 0.8, "served_top_p": 0.9})
    _, blob = load_prior(path)
    assert blob["metrics"] == {"valid": {"nll": 1.0}, "served_temperature": 0.8, "served_top_p": 0.9}
    save_checkpoint(tmp_path / "mel_tiny.pt", composer.vae)
    loaded = LongformComposer.load(path)  # finds the VAE beside the prior
    assert (loaded.default_temperature, loaded.default_top_p) == (0.8, 0.9)


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


def test_the_state_from_cached_keys_is_the_state_over_the_whole_prefix():
    """Sampling computes each position's state from the layers' cached keys and values: it must be the
    state `hidden` computes over the whole prefix (which training and the likelihood use)."""
    prior = LatentPrior(dataclasses.replace(PRIOR_TINY, n_layers=2)).eval()
    g = torch.Generator().manual_seed(0)
    B, n = 4, 6
    zn = torch.randn(B, n, PRIOR_TINY.pca_dim, generator=g)
    ties = torch.rand(B, n, generator=g) < 0.3
    meter, length, ends = torch.tensor([0, 1, 2, 3]), torch.tensor([6, 6, 9, 12]), torch.tensor([1, 0, 1, 0]).bool()
    cache, states = [], []
    with torch.no_grad():
        whole = prior.hidden(zn, ties, meter, length, ends)
        for i in range(n):
            prev = (zn[:, i - 1], ties[:, i - 1]) if i else (None, None)
            states.append(prior.next_hidden(cache, *prev, meter, length, ends))
    assert torch.allclose(torch.stack(states, 1), whole, atol=1e-5)


def test_the_nucleus_is_exact_however_many_codes_it_holds():
    """The nucleus is looked for among the likeliest 2,048 codes, then 4,096, then all: whichever rung
    settles a row, the codes kept are the ones a full sort keeps."""
    from generation.vae.prior import NUCLEUS_LADDER, nucleus_rungs

    def nucleus(probs, top_p):
        kept = torch.full_like(probs, -1.0)
        for rows, ranked, codes in nucleus_rungs(probs, top_p):
            kept[rows] = torch.zeros_like(probs[rows]).scatter(-1, codes, ranked)
        return kept

    def by_full_sort(probs, top_p):
        ranked, order = probs.sort(-1, descending=True)
        drop = ranked.cumsum(-1) - ranked >= top_p
        return torch.zeros_like(probs).scatter(-1, order, ranked.masked_fill(drop, 0.0))

    g = torch.Generator().manual_seed(0)
    # sharp rows (a nucleus of a few codes), middling ones and flat ones (thousands of codes)
    logits = torch.randn(80, 6000, generator=g) * torch.tensor([8.0, 2.0, 1.2, 0.05]).repeat_interleave(20)[:, None]
    probs = torch.softmax(logits, -1)
    sizes = []
    for top_p in (0.5, 0.9, 0.99):
        kept = nucleus(probs, top_p)
        assert torch.equal(kept, by_full_sort(probs, top_p))
        sizes += (kept > 0).sum(-1).tolist()
    sizes = np.array(sizes)
    low, high = NUCLEUS_LADDER
    assert (sizes < low).any() and ((sizes > low) & (sizes < high)).any() and (sizes > high).any()  # every rung


@pytest.mark.parametrize("composer", ["codebook"], indirect=True)
def test_a_meter_softmax_prior_scores_codes_among_its_meters_codes(composer):
    from generation.vae.prior import meter_index

    prior = composer.prior
    four = meter_index((4, 4))
    with torch.no_grad():
        prior.code_meters[:6, four] = True
        prior.code_meters[6:, meter_index((3, 4))] = True
    h = torch.randn(1, 1, PRIOR_TINY.d_model)
    meter, need = torch.tensor([four]), torch.ones(1, 1, dtype=torch.bool)

    @torch.no_grad()
    def logp(code: int) -> float:
        return float(prior.code_log_prob(h, torch.tensor([[code]]), meter, need))

    prior.cfg = dataclasses.replace(prior.cfg, meter_softmax=False)
    everywhere = sum(math.exp(logp(k)) for k in range(6))
    assert everywhere < 0.99  # normalized over all twelve codes, the 4/4 ones hold part of the mass
    prior.cfg = dataclasses.replace(prior.cfg, meter_softmax=True)
    assert sum(math.exp(logp(k)) for k in range(6)) == pytest.approx(1.0, abs=1e-5)
    # a chunk outside the meter's codes is scored as the meter's code nearest to it
    nearest = int(torch.cdist(prior.code_coords[8:9], prior.code_coords[:6]).argmin())
    assert logp(8) == logp(nearest)


@pytest.mark.parametrize("composer", ["codebook"], indirect=True)
def test_a_new_tunes_key_is_drawn_by_its_register(composer):
    """With a table of training tunes' keys by register, a tune written low in C gets the key low
    tunes had and a high one the key high tunes had."""
    from generation.vae.chunks import tune_register

    composer.key_normalized = True
    tunes = composer.sample(6, seed=3, count=16)
    registers = [tune_register(composer.decode_chunks(t.z)) for t in tunes]
    split = float(np.median(registers))
    counts = np.zeros((128, 12))
    counts[: int(split) + 1, 6 + 2] = 1e6  # registers up to the median: always moved up 2
    counts[int(split) + 1 :, 6 - 3] = 1e6  # above it: down 3
    composer.key_shifts_by_register = {"low": 0, "counts": counts.tolist()}
    again = composer.sample(6, seed=3, count=16)
    assert [t.shift for t in again] == [2 if r <= split else -3 for r in registers]
    assert {t.shift for t in again} == {2, -3}


def test_key_table_counts_each_training_tune_by_register_and_key():
    from generation.vae.chunks import tune_register
    from generation.vae.prior_train import REGISTER_LOW, key_shifts

    cache = synthetic_cache(20)
    cache["windows"][:, 0] += 25  # tunes from about A2 up to C7
    cache["shifts"] = torch.tensor([-2] * 10 + [3] * 10)  # moved down 2 (from D) or up 3 (from A)
    train = set(cache["names"][:16])
    out = key_shifts(cache, train)
    table = np.array(out["key_shifts_by_register"]["counts"])
    assert table.sum() == 16 and table[:, 6 + 2].sum() == 10 and table[:, 6 - 3].sum() == 6
    off = cache["offsets"].numpy()
    first = tune_register(cache["windows"][off[0] : off[1]].numpy())
    assert table[first - REGISTER_LOW, 6 + 2] >= 1
    assert (table.sum(1) > 0).sum() > 5  # tunes of many registers, each in its own row
    np.testing.assert_allclose(out["key_shift_probs"], table.sum(0) / 16)


def one_note_prior(step: int) -> LatentPrior:
    """A served-kind prior of twelve codes, code k one note of pitch 60 + step * k, at random coordinates."""
    from generation.vae.representation import MIN_PITCH, OFF

    torch.manual_seed(0)
    prior = LatentPrior(PRIOR_CODES)
    prior.z_std.fill_(1.0)
    with torch.no_grad():
        prior.code_coords.copy_(torch.randn(12, PRIOR_TINY.pca_dim))
        prior.code_windows.zero_()
        prior.code_windows[:, 0] = FIRST_NOTE + 60 + step * torch.arange(12) - MIN_PITCH
        prior.code_windows[:, 8] = OFF
    return prior.eval()


def boundary_prior() -> LatentPrior:
    """Code k one note of pitch 60 + 2k, and a boundary term that strongly favours a new chunk
    starting 2 semitones above the previous chunk's last note."""
    prior = one_note_prior(2)
    with torch.no_grad():
        prior.boundary.bias[3 + 2] = 30.0  # bins -3..3 at 0..6: +2 is bin 5
    return prior


def test_the_boundary_term_scores_the_interval_between_chunks():
    prior = boundary_prior()
    meter, ends = torch.tensor([1, 1, 1]), torch.tensor([True] * 3)
    g = torch.Generator().manual_seed(1)
    z, _, _ = prior.fill(
        torch.zeros(3, 5, 16),
        torch.zeros(3, 5, dtype=torch.bool),
        torch.zeros(3, 5, dtype=torch.bool),
        meter,
        ends,
        1.0,
        g,
        copy_bias=-50.0,
    )
    codes = prior.nearest_code(z)
    for row in codes.tolist():  # each new chunk starts a step above the last note before it, until the top
        for i, (a, b) in enumerate(zip(row[:-1], row[1:])):
            assert a == 11 or b == a + 1 or a + 1 in row[:i]  # (a new chunk is none of the tune's earlier ones)
    # a known chunk's last pitch comes from its given steps (E4 here: next is F#4, code 3), else from its nearest code
    known = torch.tensor([[True, False]])
    z0 = torch.randn(1, 2, 16)
    given = torch.zeros(1, 2, 32, dtype=torch.long)
    given[0, 0, :4] = torch.tensor([FIRST_NOTE + 55 - 21, 0, FIRST_NOTE + 64 - 21, 0])
    one = torch.tensor([1])
    z1, _, _ = prior.fill(z0, torch.zeros(1, 2, dtype=torch.bool), known, one, one.bool(), 1.0, g, -50.0, windows=given)
    assert int(prior.nearest_code(z1[:, 1])) == 3
    z2, _, _ = prior.fill(z0, torch.zeros(1, 2, dtype=torch.bool), known, one, one.bool(), 1.0, g, -50.0)
    near = int(prior.nearest_code(z0[:, 0]))
    assert near == 11 or int(prior.nearest_code(z2[:, 1])) == near + 1
    # and the likelihood: the same two chunks score higher in the order the term favours
    codes_z, no_ties, all_valid = prior.code_latents(), torch.zeros(1, 2, dtype=torch.bool), torch.ones(1, 2).bool()
    with torch.no_grad():
        up, down = (
            prior.log_likelihood(codes_z[order][None], no_ties, all_valid, one, torch.tensor([2]), one.bool())["z"]
            for order in ([4, 5], [5, 4])
        )
    assert float(up) > float(down) + 20


def test_a_head_added_to_a_trained_codebook_prior_trains_alone(tmp_path):
    """Warm start from a codebook prior of the same chunks with a boundary term added and only it
    trained: every other weight, the learned code biases included, stays as it was."""
    from generation.vae.prior_train import train_prior

    cache = synthetic_cache(60)
    names = cache["names"]
    split = {"train": names[:48], "valid": names[48:], "test": []}
    cfg = dataclasses.replace(PRIOR_CODES, codebook=1, boundary_bins=0)
    train_prior(cache, split, tmp_path / "first", cfg, minutes=0.05, threads=1, eval_every_s=1.0)
    first, _ = load_prior(tmp_path / "first" / "prior.pt")
    with torch.no_grad():  # biases no frequency count would give: a re-filled codebook would lose them
        first.code_bias.copy_(torch.linspace(-3.0, 3.0, first.cfg.codebook))
    save_prior(tmp_path / "first.pt", first, vae="mel_tiny.pt")
    train_prior(
        cache,
        split,
        tmp_path / "second",
        cfg,
        minutes=0.05,
        threads=1,
        eval_every_s=1.0,
        init=tmp_path / "first.pt",
        init_overrides={"codebook": 1, "boundary_bins": 3},
        train_only=["boundary"],
    )
    second, _ = load_prior(tmp_path / "second" / "prior.pt")
    assert second.cfg.boundary_bins == 3
    before, after = first.state_dict(), second.state_dict()
    for name, value in after.items():
        if name.startswith("boundary"):
            continue
        assert torch.allclose(value.float(), before[name].float(), rtol=1e-2, atol=1e-3), name  # fp16 on disk
    assert second.boundary.weight.abs().sum() > 0  # the new term did train


@pytest.mark.parametrize("composer", ["codebook"], indirect=True)
def test_what_is_derived_from_the_codebook_follows_its_changes(composer):
    """Latents, per-meter sets and rows are kept between draws, and rebuilt when the codebook changes."""
    from generation.vae.prior import meter_index

    prior, four = composer.prior, meter_index((4, 4))
    with torch.no_grad():
        prior.code_meters[:6, four] = True
    first = composer.sample(4, meter=(4, 4), seed=1, count=6, copy_bias=-50.0)
    assert {int(c) for t in first for c in composer._codes_of(t.z)} <= set(range(6))
    with torch.no_grad():
        prior.code_meters[:, four] = False
        prior.code_meters[6:, four] = True
        prior.code_coords.mul_(2.0)
    assert torch.equal(prior.code_latents(), prior.unstandardize(prior.code_coords.float()))
    again = composer.sample(4, meter=(4, 4), seed=1, count=6, copy_bias=-50.0)
    assert {int(c) for t in again for c in composer._codes_of(t.z)} <= set(range(6, 12))
